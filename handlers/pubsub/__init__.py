"""The edge to Pub/Sub: events as binary-mode CloudEvents, published and confirmed.

Imports ``handlers.core`` and ``handlers.process``; never CDF, the flows or the CLI.
"""
