"""Counts of what a flow did, one field each, as its event names them (camelCase). Pure."""

from __future__ import annotations

import dataclasses
from typing import Any


class Tally:
    """A dataclass of counts: added one outcome at a time, merged field by field, and given as an event's data."""

    def add(self, outcome: str, n: int = 1) -> None:
        setattr(self, outcome, getattr(self, outcome) + n)

    def merge(self, other: Any) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]  # subclasses are dataclasses
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def data(self) -> dict[str, int]:
        """The counts under the names the event and the summary line give them (camelCase)."""
        return {camel(f.name): getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
