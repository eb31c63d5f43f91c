"""The soak's size and hostility, and the names the function runs under."""

from __future__ import annotations

from dataclasses import dataclass

GCP_PROJECT = "matchrelay-soak"
CDF_PROJECT = "demo"
CLIENT_ID = "matchrelay"
CLIENT_SECRET = "soak-Secret-4b2e"


@dataclass(frozen=True)
class Config:
    """How big and how hostile a soak is; the function's timings are kept small so hand-backs happen."""

    runs: int = 50
    seed: int = 1
    threads: int = 4
    budget_s: float = 0.5  # POLL_BUDGET_S
    http_timeout_s: float = 0.5  # HTTP_TIMEOUT_S
    slow_s: float = 1.0  # a slow answer past HTTP_TIMEOUT_S
    max_deliveries: int = 50  # per run; a run still handed back after that many counts as lost
    expire_age_s: float = 0.2  # token expiry spares tokens younger than this (see ChaosSimulator)
