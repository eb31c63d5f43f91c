"""The import rule of docs/architecture.md holds, and the check that enforces it sees a breach."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT
from tests.support.architecture import check, read_tree


def test_the_tree_keeps_the_import_rule() -> None:
    """No layer imports above itself or a library it must never load, main never loads the CLI, and nothing cycles."""
    sources = read_tree(ROOT)
    assert {"handlers.core.trigger", "handlers.flow.relay", "handlers.cli.commands", "main"} <= set(sources)
    assert check(sources) == []


def test_nothing_in_the_house_cycles() -> None:
    """The simulator, the demo, the benches and the schemas import in no loop either, type-only imports included."""
    sources = read_tree(ROOT, ("handlers", "sim", "demo", "bench", "schemas"))
    assert {"sim.listing", "sim.writes", "demo.cli", "bench.link"} <= set(sources)
    assert check(sources) == []


CLEAN = {
    "main": "from handlers.flow import runtime\nif __name__ == '__main__':\n    from handlers.cli import commands\n",
    "handlers.core.a": "import json\n",
    "handlers.core.b": "from handlers.core import a\n",
    "handlers.cdf.edge": "import httpx\nfrom handlers.core import b\n",
    "handlers.pubsub.sink": "from google import pubsub_v1\n",
    "handlers.flow.runtime": "from handlers.cdf import edge\nfrom handlers.pubsub import sink\n",
    "handlers.cli.commands": "import rich\nfrom handlers.flow import runtime\n",
}


@pytest.mark.parametrize(
    ("module", "source", "breach"),
    [
        ("handlers.core.a", "from handlers.flow import runtime\n", "handlers.core may not import handlers.flow"),
        ("handlers.core.a", "def f():\n    import httpx\n", "handlers.core never imports httpx"),
        ("handlers.cdf.edge", "from handlers.pubsub import sink\n", "handlers.cdf may not import handlers.pubsub"),
        ("handlers.flow.runtime", "import rich.console\n", "handlers.flow never imports rich"),
        ("handlers.flow.runtime", "from handlers.cli import commands\n", "handlers.flow may not import handlers.cli"),
        ("main", "from handlers.cli import commands\n", "the function's path never loads the CLI"),
        (
            "handlers.core.a",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from handlers.core import b\n",
            "import cycle: handlers.core.a → handlers.core.b",
        ),
    ],
    ids=["upward", "forbidden-library", "sibling-edges", "display-in-flow", "flow-to-cli", "main-to-cli", "cycle"],
)
def test_a_breach_is_seen(module: str, source: str, breach: str) -> None:
    """Each kind of breach, planted in an otherwise clean tree, is reported by name."""
    assert check(CLEAN) == []
    breaches = check({**CLEAN, module: CLEAN.get(module, "") + source})
    assert any(breach in b for b in breaches), breaches
