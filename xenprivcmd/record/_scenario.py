"""The fixed read-only scenario: :func:`run_scenario`, and :func:`make` / :func:`check` of a recording with its JSON sidecar."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple, Union
from urllib.parse import quote

from ..transport.privcmd import Transport
from ._format import FORMAT, ReplayMismatch, load
from ._recording import RecordingTransport
from ._replay import ReplayTransport

MISSING_DOMID = 0x7FE0


def jsonable(value: Any) -> Any:
    """A JSON-ready form of a result (namedtuples as dicts, sets sorted, bytes as hex)."""
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return {k: jsonable(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(jsonable(v) for v in value)
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _error(exc: BaseException) -> Dict[str, Any]:
    return {"type": type(exc).__name__, "errno": getattr(exc, "errno", None), "message": str(exc)}


def scenario_steps(h: Any) -> List[Tuple[str, Callable[[], Any]]]:
    """The fixed, deterministic, read-only scenario: (name, call) pairs."""

    def abi_step() -> Dict[str, Any]:
        v = h.abi
        return {"release": v.release, "arch": v.arch, "domctl_interface_version": v.domctl_interface_version,
                "sysctl_interface_version": v.sysctl_interface_version, "detection": jsonable(h.detection)}

    return [
        ("version", h.version),
        ("abi", abi_step),
        ("domains", lambda: h.domains(names=False)),
        ("domain_info(0)", lambda: h.domain_info(0, name=False)),
        (f"domain_info({MISSING_DOMID:#x})", lambda: h.domain_info(MISSING_DOMID, name=False)),
        ("physinfo", lambda: h.physinfo()),  # named here, it would build the engine (detect) first
        ("sched_id", h.sched_id),
        ("vcpu_info(0)", lambda: h.vcpu_info(0)),
        ("vcpu_affinity(0, 0)", lambda: h.vcpu_affinity(0, 0)),
        ("sched_params(0)", lambda: h.sched_params(0)),
        ("cpu_topology", h.cpu_topology),
        ("numa_info", h.numa_info),
        ("pcpu_info", h.pcpu_info),
        ("read_console", h.read_console),
    ]


def run_scenario(h: Any) -> List[Dict[str, Any]]:
    """Run the scenario on handle ``h``; one ``{"step", "result"|"error"}`` dict per step.

    An error a step raises is part of the outcome (``type``, ``errno``,
    ``message``), except :class:`ReplayMismatch`, which propagates.
    """
    out: List[Dict[str, Any]] = []
    for name, call in scenario_steps(h):
        try:
            value = call()
        except ReplayMismatch:
            raise
        except Exception as exc:  # every error is part of the recording
            out.append({"step": name, "error": _error(exc)})
        else:
            out.append({"step": name, "result": jsonable(value)})
    # Through JSON and back: the form a sidecar is compared in.
    return json.loads(json.dumps(out))  # type: ignore[no-any-return]


def sidecar_path(recfile: str) -> str:
    """``x.rec`` -> ``x.json``; the JSON sidecar of a recording."""
    root, ext = os.path.splitext(recfile)
    return (root if ext and ext != ".json" else recfile) + ".json"


def make(outfile: str, inner: Union[None, str, Transport] = None, comment: str = "",
         abi: Optional[str] = None) -> Dict[str, Any]:
    """Record the scenario into ``outfile`` and write its JSON sidecar; returns the sidecar.

    ``inner`` is what is recorded: a URI (default: the local privcmd device)
    or a :class:`Transport` (an in-process hypervisor; closed afterwards).
    """
    from .. import open as xopen
    from ..handle import Handle

    if isinstance(inner, Transport):
        t = RecordingTransport(inner, outfile, comment=comment, inner_uri=inner.kind, arch="x86_64", abi=abi)
        h = Handle(t, "record:" + outfile, abi=abi)
    else:
        query = []
        if inner:
            query.append("inner=" + quote(inner, safe=":/"))
        if comment:
            query.append("comment=" + quote(comment, safe=""))
        uri = "record://" + os.path.abspath(outfile) + ("?" + "&".join(query) if query else "")
        h = xopen(uri, abi=abi)
    try:
        steps = run_scenario(h)
    finally:
        h.close()
    rec = load(outfile)
    side = {
        "format": FORMAT,
        "recording": os.path.basename(outfile),
        "library": rec.header.get("library"),
        "xen": rec.header.get("xen"),
        "date": rec.header.get("date"),
        "inner": rec.header.get("inner"),
        "abi": rec.header.get("abi"),
        "comment": rec.header.get("comment"),
        "records": len(rec.records),
        "steps": steps,
    }
    with open(sidecar_path(outfile), "w", encoding="utf-8") as f:
        json.dump(side, f, indent=1, sort_keys=False)
        f.write("\n")
    return side


def check(recfile: str, abi: Optional[str] = None) -> List[str]:
    """Replay ``recfile`` through the scenario and compare with its sidecar; the differences (empty: identical)."""
    from .. import open as xopen

    with open(sidecar_path(recfile), encoding="utf-8") as f:
        side = json.load(f)
    h = xopen("replay:" + os.path.abspath(recfile), abi=abi)
    t = h.transport
    assert isinstance(t, ReplayTransport)
    try:
        steps = run_scenario(h)
    finally:
        unused = t.remaining
        t.close(strict=False)
    diffs = []
    want: List[Dict[str, Any]] = side["steps"]
    if [s["step"] for s in want] != [s["step"] for s in steps]:
        diffs.append(f"steps: recorded {[s['step'] for s in want]}, replayed {[s['step'] for s in steps]}")
    for a, b in zip(want, steps):
        if a != b:
            diffs.append(f"{a['step']}: live {json.dumps(a, sort_keys=True)}\n  replayed {json.dumps(b, sort_keys=True)}")
    if unused:
        diffs.append(f"{unused} of {len(t.records)} records unused (the library issued fewer hypercalls than recorded)")
    return diffs
