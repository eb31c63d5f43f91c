"""The edge to CDF: HTTP under a deadline, the token, the pipelines API, result bodies and list pages.

Every answer is translated into ``handlers.core.errors`` here, once. Imports
``handlers.core`` and ``handlers.process``; never Pub/Sub, the flows or the CLI.
"""
