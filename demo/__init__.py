"""The whole of matchrelay on one machine: ``python -m demo`` (or ``./dev demo``).

Starts Google's Pub/Sub emulator, the CDF simulator (``python -m sim --scenario
demo``), the function itself and the link under functions-framework, with the
environment of a deployment. A push subscription delivers trigger messages to
the function exactly as Pub/Sub does in production, another the events topic's
``run.completed`` to the link; the demo then publishes a few triggers, prints
the links the link made in CDF and what a subscriber of the event topics
receives. Nothing leaves 127.0.0.1, and everything started is stopped again on
exit (also on Ctrl-C).

- ``demo.stack``: the processes (emulator, simulator, function, link) and their logs.
- ``demo.bus``: topics, subscriptions, triggers and the subscriber's pull.
- ``demo.links``: the link's setting, and the links read back from the simulator.
- ``demo.show``: what gets printed.
- ``demo.cli``: the flow and its options.
"""
