"""``python3 -m xenprivcmd.abi show 4.17 xen_domctl_getdomaininfo``: see :mod:`.show`."""

from .show import main

raise SystemExit(main())
