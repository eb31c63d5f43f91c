"""The downstream example, deployed from this folder alone.

This file only gives its ``main`` a package name of its own for the type
checker, since the repository root has a ``main.py`` too.
"""
