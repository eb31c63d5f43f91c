"""A local CDF simulator for matchrelay's tests and demos (stdlib only).

with CdfSimulator(project="demo") as sim:
    sim.set_run(1, 456, [Step.status("Running"), Step.run(make_run(5, 2, 1))])
    ...  # point CDF_URL at sim.url and IDP_TOKEN_URL at sim.token_url
"""

from __future__ import annotations

from sim.data import make_run, stream_run_body
from sim.server import CdfSimulator
from sim.steps import Request, Step

__all__ = ["CdfSimulator", "Request", "Step", "make_run", "stream_run_body"]
