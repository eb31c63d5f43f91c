"""``python -m demo [--verbose] [--keep-running]``: see ``demo.cli``."""

from demo.cli import main

raise SystemExit(main())
