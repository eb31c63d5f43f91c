"""What CDF's answers to the classic resources' ``byids`` and ``update`` say, read at a glance or in full.

Each answer that is not of the documented shape is ``MalformedResponse``, as on
the read edge; ``handlers.cdf.resources`` sends the requests.
"""

from __future__ import annotations

from typing import Any

import httpx

from handlers.cdf.httpio import json_object
from handlers.core.errors import MalformedResponse
from handlers.core.models import MAX_ID, is_integer


def by_id(items: Any, path: str) -> dict[int, dict[str, Any]]:
    """``byids``' items by id; ``MalformedResponse`` unless a list of objects, each with a CDF id."""
    try:  # only an object takes ["id"]: a string, a number, a list or null as an item raises TypeError
        found: dict[int, dict[str, Any]] = {item["id"]: item for item in items} if isinstance(items, list) else {}
    except (TypeError, KeyError):
        found, items = {}, None
    ids_ok = set(map(type, found)) <= {int} and (not found or (min(found) > 0 and max(found) <= MAX_ID))
    if not isinstance(items, list) or not ids_ok:
        raise MalformedResponse(f"CDF answered {path}/byids without a list of items with ids")
    return found


def glance(response: httpx.Response) -> dict[str, Any]:
    """A 200 whose items are not needed: a JSON object by its first and last bytes, else ``MalformedResponse``."""
    if not response.content.strip().startswith(b"{") or not response.content.rstrip().endswith(b"}"):
        raise MalformedResponse("CDF answered a body that is not a JSON object")
    return {}


def missing_ids(response: httpx.Response) -> set[int] | None:
    """The ids of a 400's ``error.missing`` (``[{"id": N}, ...]``), or None when it names none."""
    try:
        error = json_object(response, "CDF").get("error")
    except MalformedResponse:
        return None
    entries = error.get("missing") if isinstance(error, dict) else None
    if not isinstance(entries, list):
        return None
    ids = {e["id"] for e in entries if isinstance(e, dict) and is_integer(e.get("id"))}
    return ids or None


def page(answer: dict[str, Any], path: str) -> tuple[list[dict[str, Any]], str | None]:
    """``list``'s items and ``nextCursor`` (None on the last page); ``MalformedResponse`` unless items are objects
    with CDF ids and the cursor is text or null."""
    items, cursor = answer.get("items"), answer.get("nextCursor")
    if not isinstance(cursor, str | None) or not isinstance(items, list):
        raise MalformedResponse(f"CDF answered {path}/list without a list of items and a cursor")
    by_id(items, path)  # each an object with an id
    return items, cursor
