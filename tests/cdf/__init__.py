"""Tests of handlers/cdf/: the edge to CDF, on httpx's MockTransport or against the simulator over HTTP."""
