"""Tests of the CDF simulator (sim/): it behaves like CDF and obeys its scripts."""
