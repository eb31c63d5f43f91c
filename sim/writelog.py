"""What a write script may answer (`Applied`), and what every write leaves in the simulator's record (`Write`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sim.steps import Request, Step


@dataclass(frozen=True)
class Applied:
    """In a write script: apply the write, then answer `step` (e.g. a write that took effect, its answer lost)."""

    step: Step


Scripted = Step | Applied | None


@dataclass(frozen=True)
class Write:
    """One `update` request as received and answered."""

    kind: str
    request: Request = field(repr=False)  # as recorded: the body compressed, as `CdfSimulator.requests` has it
    status: int  # 0: the connection was dropped unanswered
    received: float  # time.monotonic()
    answered: float
    applied: bool
    unchanged: tuple[int, ...] = ()  # items the write named but left as they were

    @property
    def body(self) -> bytes:
        """The body as sent."""
        return self.request.body

    @property
    def items(self) -> list[Any] | None:
        """The items as sent, or None when the body was not an object with an items list."""
        try:
            items = json.loads(self.body).get("items")
        except (ValueError, AttributeError):
            return None
        return items if isinstance(items, list) else None
