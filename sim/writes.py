"""How the simulator answers `byids`, `update` and `list` on classic resources: limits, latency, faults, records.

- Writes (`update`) are limited project-wide: with `write_limit` set, a write that
  arrives while that many are in flight answers 429 at once. `write_latency_s` is
  how long every write counts as in flight, from its arrival to its answer, its
  own work included (as CDF's latency is); `byids_latency_s` is held by every byids,
  `list_latency_s` by every list (sim/listing.py serves those).
- `hold_writes()` keeps admitted writes in flight until `release_writes()`, and
  `wait_writes_in_flight(n)` waits until n are (sim/gate.py), so tests synchronise
  on the simulator's own state rather than on sleeps.
- Scripts answer the next requests of an endpoint in order (per kind, or for any
  kind with kind None): a `Step` instead of processing (nothing applied), `None`
  normally, and for writes `Applied(step)`: applied, then answered `step`.
- `delete_after_next_byids` deletes items or assets right after the next `byids`
  answer of a kind: a source deleted between the link's read and its write.
- Every write is recorded (`Write`, sim/writelog.py): kind, body as sent, status answered (0 when
  dropped), times, whether it was applied, and which items it left unchanged.
- Every body is first checked against CDF's own OpenAPI (sim/openapi.py), before any
  script, limit or latency: one it refuses is answered 400 at once, with CDF's error
  body, changes nothing, and is kept in `invalid` as (endpoint, message), so tests can
  assert that nothing a product sent was refused.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from typing import Any

from sim.assets import Assets
from sim.classic import KINDS, Resource
from sim.gate import WriteGate
from sim.listing import Listing
from sim.listing import answer as answer_list
from sim.openapi import checked
from sim.quick import apply_quick, quick_changes
from sim.steps import Request, Step
from sim.updates import (
    Refusal,
    apply_all,
    changes_of,
    duplicated_ids,
    items_body,
    lookup,
    parse_byids,
    parse_update,
    update_items,
)
from sim.writelog import Applied, Scripted, Write


class Classic:
    """Classic resources' state and their `byids` / `update` endpoints (thread-safe)."""

    def __init__(
        self,
        stopping: threading.Event,
        *,
        write_limit: int | None = None,
        write_latency_s: float = 0.0,
        byids_latency_s: float = 0.0,
        list_latency_s: float = 0.0,
    ) -> None:
        self.write_limit = write_limit
        self.write_latency_s = write_latency_s
        self.byids_latency_s = byids_latency_s
        self.list_latency_s = list_latency_s
        self.lock = threading.Lock()
        self.resources = {kind: Resource(kind) for kind in KINDS}
        self.assets = Assets()
        self.gate = WriteGate(stopping)  # writes in flight under `write_limit`, and `hold()`
        self.writes: list[Write] = []
        self.invalid: list[tuple[str, str]] = []  # (endpoint, message) of each body CDF's OpenAPI refuses
        self.cpu: defaultdict[str, float] = defaultdict(float)  # thread CPU seconds answering, per op
        self.answered: Counter[str] = Counter()  # requests answered, per op
        self.listing = Listing()  # what lists keep between requests
        self.stopping = stopping
        self._scripts: dict[tuple[str, str | None], list[Scripted]] = {}
        self._after_byids: dict[str, list[tuple[tuple[int, ...], tuple[int, ...]]]] = {}

    def reset(self) -> None:
        """Forget items, assets, scripts and records, and let held writes go; limits and latency stay."""
        self.gate.reset()
        with self.lock:
            self.resources = {kind: Resource(kind) for kind in KINDS}
            self.assets = Assets()
            self.writes.clear()
            self.invalid.clear()
            self.cpu.clear()
            self.answered.clear()
            self.listing = Listing()
            self._scripts.clear()
            self._after_byids.clear()

    @property
    def in_flight(self) -> int:
        return self.gate.in_flight

    @property
    def peak_in_flight(self) -> int:
        return self.gate.peak

    # -- scripting --------------------------------------------------------------

    def script(self, op: str, kind: str | None, steps: list[Scripted]) -> None:
        if op != "update" and any(isinstance(s, Applied) for s in steps):
            raise ValueError("Applied is for writes only")
        with self.lock:
            self._scripts[(op, kind)] = list(steps)

    def delete_after_next_byids(self, kind: str, items: tuple[int, ...], assets: tuple[int, ...]) -> None:
        with self.lock:
            self._after_byids.setdefault(kind, []).append((items, assets))

    def next_scripted(self, op: str, kind: str) -> Scripted:
        with self.lock:
            for key in ((op, kind), (op, None)):
                steps = self._scripts.get(key)
                if steps:
                    return steps.pop(0)
        return None

    # -- answering --------------------------------------------------------------

    def answer(self, kind: str, op: str, request: Request) -> Step:
        """The answer to `op` (byids, update, list) of `kind`, its thread CPU counted (`cpu`): on cores a benchmark
        shares with the link, what the simulator spends is time the link may wait."""
        started = time.thread_time()
        try:
            return self._answer(kind, op, request)
        finally:
            spent = time.thread_time() - started
            with self.lock:
                self.cpu[op] += spent
                self.answered[op] += 1

    def _answer(self, kind: str, op: str, request: Request) -> Step:
        if request.method != "POST":
            return Step.error(405, f"Use POST for {kind}/{op}")
        if op == "byids":
            return self._byids(kind, request)
        if kind == "assets":
            return Step.error(404, f"The simulator does not {op} assets")
        if op == "list":
            return answer_list(self, kind, request)
        return self._update(kind, request)

    def refused(self, endpoint: str, body: bytes) -> Step | None:
        """CDF's 400 for a body its OpenAPI refuses (ids named twice in `duplicated`, as CDF does), else None."""
        return self.checked(endpoint, body)[1]

    def checked(self, endpoint: str, body: bytes) -> tuple[Any, Step | None]:
        """The body as its check read it, and `refused`'s answer."""
        document, message = checked(endpoint, body)
        if message is None:
            return document, None
        with self.lock:
            self.invalid.append((endpoint, message))
        return document, Refusal(message, duplicated=duplicated_ids(body)).step()

    def _byids(self, kind: str, request: Request) -> Step:
        document, invalid = self.checked(f"{kind}/byids", request.body)
        if invalid is not None:
            return invalid
        scripted = self.next_scripted("byids", kind)
        if isinstance(scripted, Step):
            step = scripted
        else:
            if self.byids_latency_s:
                self.stopping.wait(self.byids_latency_s)
            try:
                ids, ignore = parse_byids(request.body, document)
                with self.lock:
                    store = self.assets if kind == "assets" else self.resources[kind]
                    step = Step(body=lookup(store, ids, ignore))
            except Refusal as refusal:
                step = refusal.step()
        with self.lock:
            pending = self._after_byids.get(kind)
            items, assets = pending.pop(0) if pending else ((), ())
            for item_id in items:
                self.resources[kind].delete(item_id)
            for asset_id in assets:
                self.assets.delete(asset_id)
        return step

    def _update(self, kind: str, request: Request) -> Step:
        received = request.time
        document, invalid = self.checked(f"{kind}/update", request.body)
        if invalid is not None:
            return self._record(kind, request, received, invalid, applied=False)
        scripted = self.next_scripted("update", kind)
        if isinstance(scripted, Step):
            return self._record(kind, request, received, scripted, applied=False)
        if isinstance(scripted, Applied):
            _, applied, unchanged = self._apply(kind, request.body, document)
            return self._record(kind, request, received, scripted.step, applied, unchanged)
        if not self.gate.admit(self.write_limit):
            step = Step.error(429, f"Too many concurrent requests: at most {self.write_limit} writes in flight")
            return self._record(kind, request, received, step, applied=False)
        try:
            if self.gate.open:  # applied as it arrives, answered once its latency has passed
                step, applied, unchanged = self._apply(kind, request.body, document)
                self.stopping.wait(max(0.0, received + self.write_latency_s - time.monotonic()))
            else:  # held: it lands when released, late, as a write whose answer never came in time may
                self.gate.wait_held(self.write_latency_s)
                step, applied, unchanged = self._apply(kind, request.body, document)
        finally:
            self.gate.leave()
        return self._record(kind, request, received, step, applied, unchanged)

    def _apply(self, kind: str, body: bytes, document: Any = None) -> tuple[Step, bool, tuple[int, ...]]:
        """Check and apply an update (quickly when shaped as a link's or an unlink's, sim/quick.py): (answer,
        applied, unchanged). `document`: the body as its OpenAPI check read it (read here when not given)."""
        resource, changes = self.resources[kind], None
        try:
            items = update_items(body, document)
            quick = quick_changes(items, resource.single)
            changes = changes_of(items, resource.single) if quick is None else None
            with self.lock:
                now_ms = int(time.time() * 1000)
                done = None if quick is None else apply_quick(resource, self.assets, quick, now_ms)
                if done is None:  # not a link's shape, or something missing, which the full way names
                    ids, unchanged = apply_all(
                        resource, self.assets, changes or parse_update(body, resource.single), now_ms
                    )
                    done = resource.encode(place for place in resource.places(ids) if place), unchanged
        except Refusal as refusal:
            return refusal.step(), False, ()
        return Step(body=items_body(done[0])), True, tuple(done[1])

    def _record(
        self,
        kind: str,
        request: Request,
        received: float,
        step: Step,
        applied: bool,
        unchanged: tuple[int, ...] = (),
    ) -> Step:
        status = 0 if step.kind == "drop" else step.code
        write = Write(kind, request.recorded(), status, received, time.monotonic(), applied, unchanged)
        with self.lock:
            self.writes.append(write)
        return step
