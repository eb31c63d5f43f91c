"""What the link's flows (the link, the undo, the review, the hand-over) are given: ``Linker`` has it all."""

from __future__ import annotations

from typing import Protocol

from handlers.cdf.api import CdfClient
from handlers.cdf.resources import Resources
from handlers.core.poll import Clock
from handlers.core.progress import Progress
from handlers.process.settings import Settings
from handlers.pubsub.publish import Sink


class LinkParts(Protocol):
    """What a link is given (``handlers.flow.linker.Linker`` has it all)."""

    settings: Settings
    cdf: CdfClient
    resources: Resources
    sink: Sink
    clock: Clock
    topic: str
    review_topic: str
    progress: Progress

    def wall(self) -> float: ...

    def now_ms(self) -> int: ...
