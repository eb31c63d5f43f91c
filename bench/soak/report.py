"""The report: what subscribers got against what the runs owed, as one line of figures and a Markdown table."""

from __future__ import annotations

import collections
from dataclasses import dataclass

from bench.soak.checks import content_problems, event_problems
from bench.soak.config import Config
from bench.soak.faults import ChaosSimulator
from bench.soak.harness import Delivery, LogLines, Received
from bench.soak.scenario import Owed, Plan
from tests.support.contract import TYPE_PREFIX


@dataclass
class Report:
    """The figures of one soak."""

    runs: int
    seed: int
    threads: int
    budget_s: float
    endings: collections.Counter[str]
    faults: collections.Counter[str]
    invocations: int
    polls: int
    retries: int
    redeliveries: int
    handbacks: collections.Counter[str]
    token_fetches: int
    tokens_expired: int
    events_expected: int
    events_received: int
    distinct: int
    lost: int
    unexpected: int
    malformed: int
    runs_complete: int
    runs_unacked: int
    errors_logged: int
    seconds: float
    problems: list[str]
    incomplete: list[str]

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.malformed == 0 and self.unexpected == 0 and self.runs_complete == self.runs

    def figures(self) -> list[tuple[str, str]]:
        return [
            ("runs", f"{self.runs} (seed {self.seed}, {self.threads} threads, POLL_BUDGET_S {self.budget_s:g})"),
            ("runs completed", f"{self.endings['completed']}"),
            (
                "expected failures (run_failed / invalid_response)",
                f"{self.endings['run_failed']} / {self.endings['invalid_response']}",
            ),
            ("faults injected", f"{sum(self.faults.values())}"),
            ("invocations", f"{self.invocations}"),
            ("polls / retries", f"{self.polls} / {self.retries}"),
            ("redeliveries", f"{self.redeliveries}"),
            ("hand-backs", ", ".join(f"{k} {v}" for k, v in sorted(self.handbacks.items())) or "0"),
            ("token fetches / tokens expired", f"{self.token_fetches} / {self.tokens_expired}"),
            ("events expected", f"{self.events_expected}"),
            ("events received", f"{self.events_received}"),
            ("distinct ce-ids", f"{self.distinct}"),
            ("lost", f"{self.lost}"),
            ("unexpected", f"{self.unexpected}"),
            ("malformed", f"{self.malformed}"),
            ("runs with their complete ce-id set", f"{self.runs_complete} / {self.runs}"),
            ("error log lines", f"{self.errors_logged}"),
            ("seconds", f"{self.seconds:.1f}"),
        ]

    def line(self) -> str:
        return (
            f"soak: runs={self.runs} seed={self.seed} faults={sum(self.faults.values())} retries={self.retries} "
            f"redeliveries={self.redeliveries} events_expected={self.events_expected} "
            f"events_received={self.events_received} distinct={self.distinct} lost={self.lost} "
            f"malformed={self.malformed} unexpected={self.unexpected} "
            f"complete={self.runs_complete}/{self.runs} seconds={self.seconds:.1f}"
        )

    def table(self) -> str:
        rows = ["| figure | value |", "|---|---:|"]
        rows += [f"| {name} | {value} |" for name, value in self.figures()]
        rows.append("")
        rows.append("| fault | injected |")
        rows.append("|---|---:|")
        rows += [f"| {kind} | {n} |" for kind, n in sorted(self.faults.items())]
        return "\n".join(rows)


def analyse(
    config: Config,
    sim: ChaosSimulator,
    plans: list[Plan],
    deliveries: list[Delivery],
    lines: LogLines,
    owed: Owed,
    received: list[Received],
) -> Report:
    """The soak's figures: each event checked, each run's ``ce-id`` set compared with what it owes."""
    by_id, malformed, problems = _check_events(sim.url, owed, received)
    incomplete = _incomplete_runs(plans, deliveries, by_id)
    faults: collections.Counter[str] = collections.Counter()
    for plan in plans:
        faults.update(plan.faults)
    faults["token endpoint fault"] -= len(sim.token_steps)  # queued but never asked for
    faults = +faults
    handbacks = collections.Counter(str(o.get("reason")) for o in lines.outcomes if o["outcome"] == "handed_back")
    return Report(
        runs=len(plans),
        seed=config.seed,
        threads=config.threads,
        budget_s=config.budget_s,
        endings=collections.Counter(p.ending for p in plans),
        faults=faults,
        invocations=sum(len(d.answers) for d in deliveries),
        polls=sum(int(o.get("polls", 0)) for o in lines.outcomes),
        retries=sum(int(o.get("retries", 0)) for o in lines.outcomes),
        redeliveries=sum(len(d.answers) - 1 for d in deliveries),
        handbacks=handbacks,
        token_fetches=len(sim.token_requests()),
        tokens_expired=sim.tokens_expired,
        events_expected=len(owed),
        events_received=len(received),
        distinct=len(by_id),
        lost=len(set(owed) - set(by_id)),
        unexpected=len(set(by_id) - set(owed)),
        malformed=malformed,
        runs_complete=len(plans) - len(incomplete),
        runs_unacked=sum(not d.acked for d in deliveries),
        errors_logged=lines.errors,
        seconds=0.0,
        problems=problems[:20],
        incomplete=incomplete[:20],
    )


def _check_events(cdf_url: str, owed: Owed, received: list[Received]) -> tuple[dict[str, int], int, list[str]]:
    """How often each ``ce-id`` arrived, how many events were malformed, and what was wrong with them."""
    problems: list[str] = []
    malformed = 0
    by_id: dict[str, int] = collections.Counter()
    for event in received:
        ce_id = event.attributes.get("ce-id", "")
        found = event_problems(event.topic, event.attributes, event.data, cdf_url)
        kind = event.attributes.get("ce-type", "").removeprefix(TYPE_PREFIX)
        if ce_id in owed:
            found += content_problems(kind, event.data, owed[ce_id])
        by_id[ce_id] += 1
        if found:
            malformed += 1
            problems += [f"{ce_id}: {p}" for p in found[:3]]
    return by_id, malformed, problems


def _incomplete_runs(plans: list[Plan], deliveries: list[Delivery], by_id: dict[str, int]) -> list[str]:
    """Each run whose ``ce-id`` set is not the one it owes, or whose trigger was never acked."""
    incomplete = []
    for plan, delivery in zip(plans, deliveries, strict=True):
        want = set(plan.expected())
        got = {ce_id for ce_id in by_id if ce_id.startswith(plan.prefix)}
        if want != got or not delivery.acked:
            incomplete.append(
                f"run {plan.pipeline_id}/{plan.run_id} ({plan.ending}, answers {delivery.answers[-5:]}): "
                f"missing {sorted(want - got)[:5]}, extra {sorted(got - want)[:5]}"
            )
    return incomplete
