"""What the process is given: settings from the environment, log lines, SIGTERM.

Imports ``handlers.core`` only.
"""
