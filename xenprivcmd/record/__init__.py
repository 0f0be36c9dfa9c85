"""Record real hypercall traffic to a readable text file, and replay it.

:class:`RecordingTransport` wraps another transport (the privcmd device of a
dom0, the simulator, any :class:`~xenprivcmd.transport.privcmd.Transport`) and writes
every hypercall to a text file.  :class:`ReplayTransport` serves such a file
back: each hypercall must match the next record exactly (op, arguments and
request bytes), else :class:`ReplayMismatch` is raised; the recorded reply
bytes are then written into the caller's buffer and the recorded result (or
errno) returned.  So a recording made once inside a real dom0 lets the whole
encode -> hypercall -> decode path run in CI against that hypervisor's bytes.

URIs (see :func:`xenprivcmd.open`):

* ``record:PATH`` / ``record:///PATH?inner=URI&comment=TEXT``: record the
  traffic of ``inner`` (default: the local privcmd device) into ``PATH``;
* ``replay:PATH`` / ``replay:///PATH?strict=0``: serve ``PATH`` back.

File format (version 1), one record per hypercall::

    # xenprivcmd hypercall recording, format 1
    # library: xenprivcmd 0.2.0
    # xen: 4.17.7
    # ...
    call 7: domctl(36) getdomaininfo(5)
    args: buf+0x0 0x0 0x0 0x0 0x0
    buffer: 0x7f5c2a9e0000 0x1000
    request: 0x90 bytes
      0000  05 00 00 00 15 00 00 00  00 00 00 00 00 00 00 00  |................|
      *
    reply:
      0010  00 00 00 00 00 00 00 00  03 00 00 00 ...  |................|
    result: 0

    # end: 57 records

``args`` are the five hypercall arguments; one pointing into the caller's
hypercall buffer is written ``buf+OFFSET`` (addresses differ between runs).
``buffer`` is where that buffer was when recorded (address, size).  The
request is the buffer from offset 0 to its last non-zero byte before or after
the call, rounded up to 16 bytes (so guest-handle payloads at offset 4096 are
in); rows are ``OFFSET  16 hex bytes  |ASCII|``.  Rows not shown are zero in
a request and equal to the request in a reply; ``*`` marks skipped rows.
8-byte words that point into the buffer (guest handles) are compared and
restored relative to the buffer (``pointers:`` lists them, for the reader).
The result is ``result: N`` or ``error: ENAME (N)``.  The ``# end:`` trailer
is written on close: a file without it is truncated and refused.

Run ``python -m xenprivcmd.record make OUTFILE [--inner URI]`` inside a dom0
to record the fixed read-only scenario (:func:`run_scenario`) with a JSON
sidecar of its decoded results; ``check RECFILE`` replays one against it.

The package's modules: ``_format`` (records,
their text form, :func:`parse` / :func:`load`, :func:`describe`),
``_recording`` (:class:`RecordingTransport`), ``_replay``
(:class:`ReplayTransport`), ``_uri`` (the ``record:`` / ``replay:`` URIs),
``_scenario`` (the scenario, :func:`make`, :func:`check`) and ``_cli`` (the
command line); everything public is imported here.
"""

from __future__ import annotations

# The public API (``__all__``), and, re-exported explicitly, what tests and tools
# use besides: the names and the text form, the scenario's parts, the URI parser.
from ._cli import main
from ._format import _MAGIC as _MAGIC
from ._format import FORMAT, Record, Recording, RecordingFormatError, ReplayMismatch, load, parse
from ._format import ROW as ROW
from ._format import _pointers as _pointers
from ._format import describe as describe
from ._format import format_record as format_record
from ._recording import RecordingTransport
from ._replay import ReplayTransport
from ._scenario import MISSING_DOMID as MISSING_DOMID
from ._scenario import check, make, run_scenario, sidecar_path
from ._scenario import jsonable as jsonable
from ._scenario import scenario_steps as scenario_steps
from ._uri import _split_uri as _split_uri
from ._uri import open_record, open_replay

__all__ = [
    "FORMAT",
    "ReplayMismatch",
    "RecordingFormatError",
    "Record",
    "Recording",
    "RecordingTransport",
    "ReplayTransport",
    "load",
    "parse",
    "open_record",
    "open_replay",
    "run_scenario",
    "make",
    "check",
    "sidecar_path",
    "main",
]
