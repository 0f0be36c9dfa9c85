"""The command line: ``python -m xenprivcmd.record make|check``."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from ._format import RecordingFormatError, ReplayMismatch
from ._scenario import check, make, sidecar_path


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m xenprivcmd.record",
                                description="Record hypercall traffic of a fixed read-only scenario; check a recording.")
    sub = p.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make", help="record the fixed scenario into OUTFILE (and OUTFILE's .json sidecar)")
    mk.add_argument("outfile")
    mk.add_argument("--inner", default=None, help="what to record (default: the local privcmd device), e.g. sim:///default")
    mk.add_argument("--comment", default="", help="free text for the header")
    mk.add_argument("--abi", default=None, help="override ABI detection (a release such as 4.17.0)")
    ck = sub.add_parser("check", help="replay RECFILE through the scenario and compare with its sidecar")
    ck.add_argument("recfile")
    ns = p.parse_args(argv)
    if ns.cmd == "make":
        side = make(ns.outfile, inner=ns.inner, comment=ns.comment, abi=ns.abi)
        for s in side["steps"]:
            state = "ok" if "result" in s else f"{s['error']['type']}: {s['error']['message']}"
            print(f"{s['step']:24} {state}")
        print(f"{side['records']} hypercalls recorded to {ns.outfile} (Xen {side['xen']}); sidecar {sidecar_path(ns.outfile)}")
        return 0
    try:
        diffs = check(ns.recfile)
    except (ReplayMismatch, RecordingFormatError) as exc:
        print(f"FAIL: {exc}", file=sys.stderr)
        return 1
    for d in diffs:
        print(d, file=sys.stderr)
    print(("FAIL: " if diffs else "ok: ") + f"{ns.recfile}: {len(diffs)} step(s) differ from the sidecar")
    return 1 if diffs else 0
