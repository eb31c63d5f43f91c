"""Tests of handlers/process/: settings, log lines, traces."""
