"""What a process keeps for good is frozen once per stage, after its garbage is freed (in a process of its own)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

ONCE = """
import gc
from handlers.process.heap import keep_for_good
print(gc.get_freeze_count() == 0, keep_for_good("import"), gc.get_freeze_count() > 1000,
      keep_for_good("import"), keep_for_good("runtime"))
"""
GARBAGE_FIRST = """
import gc, weakref
from handlers.process.heap import keep_for_good
class Node: pass
a, b = Node(), Node()
a.other, b.other = b, a
freed = []
weakref.finalize(a, freed.append, "a")
del a, b  # a cycle: only the collector frees it
keep_for_good("import")
print(freed == ["a"], gc.get_freeze_count() > 0)
"""


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_each_stage_freezes_once() -> None:
    """The first call of a stage freezes what is alive; a second call of it does nothing; another stage does."""
    assert _run(ONCE) == "True True True False True"


def test_garbage_is_freed_not_frozen() -> None:
    """A cycle no one holds is collected before the freeze, not kept for good."""
    assert _run(GARBAGE_FIRST) == "True True"
