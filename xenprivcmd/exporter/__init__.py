"""A Prometheus exporter on xenprivcmd: ``xenprivcmd-exporter`` / ``python3 -m xenprivcmd.exporter``.

Every dom0 becomes a scrape target, on every Xen release the library knows,
for a handful of hypercalls per scrape::

    pip install 'xenprivcmd[exporter]'
    xenprivcmd-exporter --uri xen:/// --listen 127.0.0.1:10120
    curl -s http://127.0.0.1:10120/metrics

The pieces, one concern each:

* :mod:`.scrape`: one read of the hypervisor (and of xenstore and dom0's
  backend counters) into a plain :class:`~.scrape.Sample`; ctypes + stdlib
  only, like the core;
* :mod:`.backends`: balloon targets from xenstore (network and block
  counters are the library's, :mod:`xenprivcmd.iostats`: netback's and
  blkback's in dom0's sysfs);
* :mod:`.metrics`: the :class:`~.metrics.Exporter`, a ``prometheus_client``
  collector (the optional extra ``exporter``): a Sample as metric families,
  their text exposition (byte-equal to ``generate_latest``, faster), ``xen_up``
  and the error counter, ``--min-interval`` caching;
* :mod:`.server`: the HTTP side (a bounded thread pool, TLS and basic auth,
  GET and HEAD, gzip, ``name[]``);
* :mod:`.cli`: options, one ``error:`` line and exit 1 on bad options.

``import xenprivcmd`` never loads this package, and this package loads
``prometheus_client`` only in :mod:`.metrics` and :mod:`.cli`.
"""

from __future__ import annotations

DEFAULT_HOST = "127.0.0.1"
#: The exporter's port.  Prometheus' list of default port allocations has the
#: exporters' range 9100-9999 fully taken and goes on from 10001; 10120 is in
#: none of the copies of that list we could read (none newer than 2026-08),
#: nor in /etc/services (README: "Prometheus exporter").
DEFAULT_PORT = 10120
DEFAULT_MIN_INTERVAL = 1.0

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "DEFAULT_MIN_INTERVAL"]
