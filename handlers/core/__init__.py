"""The pure core: triggers, runs and events as values, and the rules that turn one into another.

No I/O and no clock of its own: whatever waits or reads is handed in. Imports
nothing from the rest of ``handlers``, and no network or display library.
"""
