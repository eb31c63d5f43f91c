"""Tests of handlers/flow/: relay, sweep and link through the function in-process, and what crosses every package."""
