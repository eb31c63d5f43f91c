"""The simulator's pooled metadata (sim/pool.py): one number per distinct metadata, merges and removals."""

from __future__ import annotations

import json

import pytest

from sim.pool import MetadataPool


def test_metadata_is_pooled_once_whatever_the_order_of_its_keys() -> None:
    """The same metadata in any key order is one number; its JSON has the keys sorted; none is 0."""
    pool = MetadataPool()
    first = pool.intern({"b": "2", "a": "1"})
    assert pool.intern({"a": "1", "b": "2"}) == first != 0
    assert pool.intern({}) == 0
    assert pool.json[first] == json.dumps({"a": "1", "b": "2"})
    assert len(pool.pairs) == 2


MERGES = [
    pytest.param({"a": "1"}, (("b", "2"),), {"a": "1", "b": "2"}, id="adds"),
    pytest.param({"a": "1"}, (("a", "3"),), {"a": "3"}, id="replaces"),
    pytest.param({"a": "1", "b": "2"}, (("a", None),), {"b": "2"}, id="removes"),
    pytest.param({"a": "1"}, (("a", None), ("c", "3")), {"c": "3"}, id="removes-and-adds"),
    pytest.param({"a": "1"}, (("z", None),), {"a": "1"}, id="removes-what-is-not-there"),
    pytest.param({"a": "1"}, (("a", None),), {}, id="removes-the-last-key"),
]


@pytest.mark.parametrize(("before", "added", "after"), MERGES)
def test_merge_and_remove_give_the_metadata_the_changes_make(
    before: dict[str, str], added: tuple[tuple[str, str | None], ...], after: dict[str, str]
) -> None:
    """A merge, and a removal asked twice (the second from the cache), give the pooled number of the result."""
    pool = MetadataPool()
    meta = pool.intern(before)
    assert pool.merge(meta, added) == pool.intern(after)
    if all(value is None for _, value in added):
        assert pool.remove(meta, added) == pool.remove(meta, added) == pool.intern(after)
