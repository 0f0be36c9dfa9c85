"""``python -m xenprivcmd`` is ``xpsh``."""

from __future__ import annotations

import sys

from .shell import main

if __name__ == "__main__":
    sys.exit(main())
