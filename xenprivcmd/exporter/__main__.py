"""``python3 -m xenprivcmd.exporter``."""

import sys

from .cli import main

sys.exit(main())
