"""Tests of handlers/core/: the pure parts, and the contract's rows they decide through the function in-process."""
