"""The assets that exist in the simulator: ranges of ids, less the deleted ones; what byids gives of them."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Any

from sim.data import CREATED_MS, MAX_ID


class Assets:
    """The assets that exist: ranges of ids, less the deleted ones."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._counts: list[int] = []
        self._gone: set[int] = set()

    def add(self, first: int, count: int = 1) -> None:
        """Assets `first`..`first + count - 1`; adding deleted ones again brings them back."""
        if count < 1 or first < 1 or first + count - 1 > MAX_ID:
            raise ValueError(f"asset ids {first}..{first + count - 1} are not CDF ids")
        at = bisect.bisect_right(self._starts, first) - 1
        if at >= 0 and first + count <= self._starts[at] + self._counts[at]:
            self._gone.difference_update(range(first, first + count))
            return
        after = at + 1
        if (at >= 0 and self._starts[at] + self._counts[at] > first) or (
            after < len(self._starts) and self._starts[after] < first + count
        ):
            raise ValueError(f"asset ids {first}..{first + count - 1} overlap assets already there")
        self._starts.insert(after, first)
        self._counts.insert(after, count)

    def end(self) -> int:
        """One past the highest asset id ever added (1 when none)."""
        return self._starts[-1] + self._counts[-1] if self._starts else 1

    def exists(self, asset_id: int) -> bool:
        at = bisect.bisect_right(self._starts, asset_id) - 1
        return at >= 0 and asset_id < self._starts[at] + self._counts[at] and asset_id not in self._gone

    def missing(self, ids: Iterable[int]) -> list[int]:
        """Those of `ids` that do not exist, as `exists` tells, for many at once."""
        missing, starts, counts, gone, low, high = [], self._starts, self._counts, self._gone, 0, 0
        for n in ids:
            if not low <= n < high:
                at = bisect.bisect_right(starts, n) - 1
                low, high = (starts[at], starts[at] + counts[at]) if at >= 0 else (0, 0)
            if not low <= n < high or n in gone:
                missing.append(n)
        return missing

    def delete(self, asset_id: int) -> bool:
        found = self.exists(asset_id)
        self._gone.add(asset_id)
        return found

    def encode(self, asset_id: int) -> str | None:
        """The asset as JSON, exactly as `json.dumps(body(id))` writes it (None if it does not exist)."""
        if not self.exists(asset_id):
            return None
        return (
            f'{{"id": {asset_id}, "externalId": "asset-{asset_id:07d}", "name": "Asset {asset_id}", "metadata": {{}}, '
            f'"createdTime": {CREATED_MS}, "lastUpdatedTime": {CREATED_MS}}}'
        )

    def body(self, asset_id: int) -> dict[str, Any] | None:
        if not self.exists(asset_id):
            return None
        name = {"externalId": f"asset-{asset_id:07d}", "name": f"Asset {asset_id}"}
        return {"id": asset_id, **name, "metadata": {}, "createdTime": CREATED_MS, "lastUpdatedTime": CREATED_MS}
