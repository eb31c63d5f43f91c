"""The undo's table (contract, section 9.2): one case per row, per resource kind, and the update each put-back sends."""

from __future__ import annotations

import json
from typing import Any

import pytest

from handlers.core.decision import RESOURCES, Resource
from handlers.core.errors import MalformedResponse
from handlers.core.pair_lists import merged, missing, pair_of
from handlers.core.provenance import ASSET_KEY, PREVIOUS_KEY, RUN_KEY, SCORE_KEY
from handlers.core.undo import (
    CHANGED,
    KEPT,
    KEYS,
    RESTORED,
    UNLINKED,
    UNVERIFIED,
    PutBack,
    UndoCounts,
    undo,
    update_item,
)

SINGLE, LIST = RESOURCES["time_series"], RESOURCES["files"]
RUN = "demo/5/500"


def item(
    links: Any, metadata: dict[str, str] | None = None, resource: Resource = SINGLE, **kept: str
) -> dict[str, Any]:
    """An item as ``list`` answers it: id 7, its link(s), the provenance a link of run 5/500 wrote (score 0.5,
    asset 100) unless ``metadata`` is given, and other metadata ``kept``."""
    provenance = {RUN_KEY: RUN, SCORE_KEY: "0.5", ASSET_KEY: "100"} if metadata is None else metadata
    return {"id": 7, resource.field: links, "metadata": {**provenance, **kept}}


ROWS = {
    "no matchrelay:asset (before v4)": (SINGLE, item(100, {RUN_KEY: RUN, SCORE_KEY: "0.5"}), None, UNVERIFIED),
    "matchrelay:asset not an id": (SINGLE, item(100, {RUN_KEY: RUN, ASSET_KEY: "x"}), None, UNVERIFIED),
    "matchrelay:previous not an id": (
        SINGLE,
        item(100, {RUN_KEY: RUN, ASSET_KEY: "100", PREVIOUS_KEY: "-3"}),
        None,
        UNVERIFIED,
    ),
    "score not below --below": (SINGLE, item(100), 0.5, KEPT),
    "no score (a confirmed match) with --below": (
        SINGLE,
        item(100, {RUN_KEY: RUN, SCORE_KEY: "null", ASSET_KEY: "100"}),
        0.9,
        KEPT,
    ),
    "score below --below": (SINGLE, item(100), 0.6, PutBack(7, 100, None)),
    "assetId the asset, with previous": (
        SINGLE,
        item(100, {RUN_KEY: RUN, ASSET_KEY: "100", PREVIOUS_KEY: "42"}),
        None,
        PutBack(7, 100, 42),
    ),
    "assetId the asset, no previous": (SINGLE, item(100), None, PutBack(7, 100, None)),
    "assetIds holding the asset": (LIST, item([3, 100], resource=LIST), None, PutBack(7, 100, None)),
    "assetId relinked since": (SINGLE, item(101), None, CHANGED),
    "assetId unlinked since": (SINGLE, item(None), None, CHANGED),
    "assetIds without the asset since": (LIST, item([3], resource=LIST), None, CHANGED),
}


@pytest.mark.parametrize(("resource", "listed", "below", "expected"), ROWS.values(), ids=ROWS.keys())
def test_undo_row(resource: Resource, listed: dict[str, Any], below: float | None, expected: Any) -> None:
    """Each row of the table gives its put-back or its count."""
    assert undo(listed, resource, below) == expected


@pytest.mark.parametrize("kind", sorted(RESOURCES))
def test_undo_every_resource_kind(kind: str) -> None:
    """Every source resource puts its own field back."""
    resource = RESOURCES[kind]
    links = 100 if resource.single else [100]
    assert undo(item(links, resource=resource), resource) == PutBack(7, 100, None)


def test_undo_put_backs_say_their_count() -> None:
    """A put-back with an asset to restore counts restored, one without counts unlinked."""
    assert (PutBack(1, 2, 3).outcome, PutBack(1, 2, None).outcome) == (RESTORED, UNLINKED)


def test_undo_a_malformed_link_is_malformed() -> None:
    """An assetId that is no asset id is CDF's malformed answer, not a row."""
    with pytest.raises(MalformedResponse):
        undo(item("x"), SINGLE)


UPDATES = {
    "restored": (SINGLE, PutBack(7, 100, 42), {"assetId": {"set": 42}}),
    "unlinked, single": (SINGLE, PutBack(7, 100, None), {"assetId": {"setNull": True}}),
    "unlinked, list": (LIST, PutBack(7, 100, None), {"assetIds": {"remove": [100]}}),
}


@pytest.mark.parametrize(("resource", "put", "change"), UPDATES.values(), ids=UPDATES.keys())
def test_undo_update_item(resource: Resource, put: PutBack, change: dict[str, Any]) -> None:
    """The update puts the link back and removes the four provenance keys, as JSON CDF reads."""
    assert json.loads(update_item(put, resource)) == {
        "id": 7,
        "update": {**change, "metadata": {"remove": list(KEYS)}},
    }


def test_undo_counts_merge_and_data() -> None:
    """Counts add up per outcome and come out under run.unlinked's names."""
    a, b = UndoCounts(unlinked=1, written=1), UndoCounts()
    b.add(CHANGED, 2)
    a.merge(b)
    assert a.data() == {
        "unlinked": 1,
        "restored": 0,
        "changed": 2,
        "unverified": 0,
        "kept": 0,
        "rejected": 0,
        "written": 1,
    }


def test_pair_lists_missing_and_merged() -> None:
    """Pairs a list lacks are found by ids, each once; the merge keeps every entry CDF holds, in its form."""
    listed = [{"sourceId": 1, "targetId": 2}, {"sourceExternalId": "a", "targetId": 3}, "junk"]
    assert missing(listed, [(1, 2), (4, 5), (4, 5)]) == [(4, 5)]
    assert merged(listed, [(4, 5)]) == [*listed, {"sourceId": 4, "targetId": 5}]
    assert pair_of({"sourceId": True, "targetId": 1}) is None
