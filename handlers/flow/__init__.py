"""The flows, each readable top to bottom, and the runtime that wires them to the edges.

Imports the core, the process and both edges; never the CLI.
"""
