"""Tests of handlers/cli/: the terminal's display and the commands as a user runs them."""
