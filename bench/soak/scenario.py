"""Scenario generation: each run's coordinates, its script in the simulator, and the events it owes.

A run's script comes from ``random.Random(seed)``: the fault script
(``bench.soak.faults``), then the last answer. A run completes (random small
sizes, rules included) or fails in CDF; a few answer malformed bodies for ever
and must end as ``run.failed`` ``invalid_response``.
"""

from __future__ import annotations

import base64
import collections
import json
import random
import time
from dataclasses import dataclass
from typing import Any

from bench.soak.config import CDF_PROJECT, Config
from bench.soak.faults import MALFORMED_BODIES, ChaosSimulator, fault_steps
from sim import Step, make_run

Owed = dict[str, tuple[str, dict[str, Any]]]  # ce-id -> (type, the data it must carry)


@dataclass
class Plan:
    """One run: its coordinates, its script, the faults in it, and how it must end."""

    index: int
    pipeline_id: int
    run_id: int
    steps: list[Step]
    faults: collections.Counter[str]
    ending: str  # "completed", "run_failed" or "invalid_response"
    body: dict[str, Any] | None  # the final answer for completed and run_failed
    message: dict[str, Any]

    @property
    def prefix(self) -> str:
        return f"{CDF_PROJECT}/{self.pipeline_id}/{self.run_id}/"

    def expected(self) -> Owed:
        """Every ``ce-id`` the run owes subscribers: its type and the data it must carry."""
        base = {"project": CDF_PROJECT, "pipelineId": self.pipeline_id, "runId": self.run_id}
        if self.ending == "invalid_response":
            return {self.prefix + "run/failed/invalid_response": ("run.failed", {**base, "reason": "invalid_response"})}
        assert self.body is not None
        body = self.body
        times = {k: body[k] for k in ("createdTime", "startTime", "statusTime")}
        run = {**base, "jobId": body["jobId"], **times, "errors": body["errors"]}
        if self.ending == "run_failed":
            failed = {**run, "status": "Failed", "reason": "run_failed", "errorMessage": body["errorMessage"]}
            return {self.prefix + "run/failed/run_failed": ("run.failed", failed)}
        owed: Owed = {}
        for i, m in enumerate(body["matches"]):
            owed[f"{self.prefix}match/{i}"] = (
                "match",
                {
                    **base,
                    "jobId": body["jobId"],
                    "matchIndex": i,
                    "matchType": m["matchType"],
                    "score": m["score"],
                    "source": m["source"],
                    "target": m["target"],
                    "sourceId": m["source"].get("id"),
                    "sourceExternalId": m["source"].get("externalId"),
                    "targetId": m["target"].get("id"),
                    "targetExternalId": m["target"].get("externalId"),
                },
            )
        for i, rule in enumerate(body["suggestedRules"]):
            owed[f"{self.prefix}suggestedrule/{i}"] = ("suggestedrule", {**base, "ruleIndex": i, **rule})
        for i, rule in enumerate(body["generatedRules"]):
            owed[f"{self.prefix}generatedrule/{i}"] = ("generatedrule", {**base, "ruleIndex": i, **rule})
        counts = {
            "matchCount": len(body["matches"]),
            "suggestedRuleCount": len(body["suggestedRules"]),
            "generatedRuleCount": len(body["generatedRules"]),
        }
        owed[self.prefix + "run"] = ("run.completed", {**run, "status": "Completed", **counts})
        return owed


def trigger_message(pipeline_id: int, run_id: int, message_id: str) -> dict[str, Any]:
    """A Pub/Sub message naming a run, as Eventarc hands it over (``data`` base64)."""
    body = json.dumps({"pipelineId": pipeline_id, "runId": run_id}).encode()
    return {
        "data": base64.b64encode(body).decode(),
        "attributes": {},
        "messageId": message_id,
        "publishTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
    }


def plan_run(rng: random.Random, index: int, sim: ChaosSimulator, config: Config) -> Plan:
    """A random script for run ``index``: statuses and faults, then the final answer."""
    pipeline_id, run_id = 1 + index % 7, 10_000 + index
    # Endings by index, so that even a small soak has both kinds of expected failure (about 6 % and 10 %).
    ending = "invalid_response" if index % 17 == 5 else "run_failed" if index % 10 == 7 else "completed"
    body: dict[str, Any] | None = None
    if ending == "completed":
        errors = ["2 sources had no name; skipped"] if rng.random() < 0.2 else []
        sizes = (rng.randint(0, 12), rng.randint(0, 3), rng.randint(0, 3))
        body = make_run(*sizes, job_id=run_id, errors=errors, rule_size=rng.randint(1, 4))
    elif ending == "run_failed":
        errors = ["source dataset 17 is empty"] if rng.random() < 0.5 else []
        body = make_run(0, status="Failed", job_id=run_id, error_message="Source dataset is empty", errors=errors)

    def running() -> Step:
        return Step.status(rng.choice(("Queued", "Running")), run_id)

    steps, faults = fault_steps(rng, sim, config, running, body if ending == "completed" else None)
    if ending == "invalid_response":
        steps.append(rng.choice(MALFORMED_BODIES))  # the last step repeats: malformed for ever
        faults["malformed (for ever)"] += 1
    else:
        assert body is not None
        final = Step.run(body)
        steps.append(Step.slow(rng.uniform(0.01, 0.1), final) if rng.random() < 0.2 else final)
    message = trigger_message(pipeline_id, run_id, f"{config.seed:04d}{index:07d}")
    return Plan(index, pipeline_id, run_id, steps, faults, ending, body, message)
