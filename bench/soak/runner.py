"""The runner: the simulator scripted, the function deployed in-process, every trigger delivered, the topics drained."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.soak.config import CDF_PROJECT, CLIENT_ID, CLIENT_SECRET, Config
from bench.soak.faults import ChaosSimulator
from bench.soak.harness import LogLines, PubSub, deliver_until_acked, load_function, patched_environ
from bench.soak.report import Report, analyse
from bench.soak.scenario import plan_run


def soak(config: Config, emulator_host: str, log_path: Path) -> Report:
    """Run the soak against the emulator at ``emulator_host``; the function's own log lines go to ``log_path``."""
    started = time.monotonic()
    rng = random.Random(config.seed)
    tag = uuid.uuid4().hex[:10]
    with ChaosSimulator(CDF_PROJECT, CLIENT_ID, CLIENT_SECRET) as sim:
        env = {
            "CDF_PROJECT": CDF_PROJECT,
            "CDF_URL": sim.url,
            "IDP_TOKEN_URL": sim.token_url,
            "IDP_CLIENT_ID": CLIENT_ID,
            "IDP_CLIENT_SECRET": CLIENT_SECRET,
            "POLL_INITIAL_DELAY_S": "0.01",
            "POLL_MAX_DELAY_S": "0.05",
            "POLL_BUDGET_S": str(config.budget_s),
            "HTTP_TIMEOUT_S": str(config.http_timeout_s),
            "LOG_LEVEL": "INFO",
            "PUBSUB_EMULATOR_HOST": emulator_host,
        }
        with patched_environ(env):
            pubsub = PubSub()
            events_topic, events_sub = pubsub.topic(f"soak-events-{tag}")
            errors_topic, errors_sub = pubsub.topic(f"soak-errors-{tag}")
            os.environ.update({"RELAY_TOPIC": events_topic, "RELAY_ERROR_TOPIC": errors_topic})
            plans = [plan_run(rng, i, sim, config) for i in range(config.runs)]
            for plan in plans:
                sim.set_run(plan.pipeline_id, plan.run_id, plan.steps)
            lines = LogLines()
            root = logging.getLogger()
            with log_path.open("a", encoding="utf-8") as log, contextlib.redirect_stdout(log):
                app = load_function()
                root.addHandler(lines)
                try:
                    local = threading.local()
                    with ThreadPoolExecutor(max(1, config.threads), thread_name_prefix="soak") as pool:
                        deliveries = list(pool.map(lambda p: deliver_until_acked(app, local, p, config), plans))
                finally:
                    root.removeHandler(lines)
            owed = {ce_id: want for plan in plans for ce_id, want in plan.expected().items()}
            received = pubsub.drain(events_sub, "events", sum(1 for k, _ in owed.values() if k != "run.failed"))
            received += pubsub.drain(errors_sub, "errors", sum(1 for k, _ in owed.values() if k == "run.failed"))
        report = analyse(config, sim, plans, deliveries, lines, owed, received)
    report.seconds = time.monotonic() - started
    return report
