"""The whole of matchrelay on one machine: ``python -m demo`` (or ``./dev demo``).

Starts Google's Pub/Sub emulator, the CDF simulator (``python -m sim --scenario
demo``) and the function itself under functions-framework, with the environment
of a deployment. A push subscription delivers trigger messages to the function
exactly as Pub/Sub does in production; the demo then publishes a few triggers
and prints what a subscriber of the event topics receives. Nothing leaves
127.0.0.1, and everything started is stopped again on exit (also on Ctrl-C).

- ``demo.stack``: the processes (emulator, simulator, function) and their logs.
- ``demo.bus``: topics, subscriptions, triggers and the subscriber's pull.
- ``demo.show``: what gets printed.
- ``demo.cli``: the flow and its options.
"""
