"""``python -m schemas``: write the events' JSON Schemas; ``--check``: exit 1 if the committed ones are stale."""

from __future__ import annotations

import argparse
import sys

from schemas import DIRECTORY, stale, write


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas", description=__doc__)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file would change")
    args = parser.parse_args(argv)
    if args.check:
        outdated = stale()
        for name in outdated:
            print(f"stale: schemas/{name}", file=sys.stderr)
        if outdated:
            print("run `python -m schemas` and commit the result", file=sys.stderr)
        return 1 if outdated else 0
    for name in write():
        print(f"wrote schemas/{name}" if (DIRECTORY / name).exists() else f"removed schemas/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
