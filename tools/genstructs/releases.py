"""Which Xen releases exist and which git revision stands for each one."""

from __future__ import annotations

import io
import os
import re
import subprocess
import tarfile
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

PUBLIC = "xen/include/public"


@dataclass(frozen=True)
class Release:
    name: str  # "4.10.1", "4.23-dev"
    xen: Tuple[int, ...]  # (4, 10, 1) ; head: (4, 23)
    ref: str  # git revision used for the headers
    exact: bool  # False: the revision only approximates the release
    note: str = ""


# Xen 3.x point releases were cut from separate "-testing" trees whose
# history is not part of the xen.git mirror.  Each one is approximated by
# the mainline revision the testing tree was branched from (the
# "-branched" tag, or the last release-candidate tag on mainline).
# Stable point releases normally keep the public ABI of their .0 release.
_APPROX_3X: Tuple[Tuple[str, str, str], ...] = (
    ("3.0.1", "RELEASE-3.0.0", "3.0-testing after 3.0.0; headers of RELEASE-3.0.0"),
    ("3.0.2", "3.0.2-branched", "3.0-testing resync point (tag 3.0.2-branched)"),
    ("3.0.3", "3.0.3-branched", "tag 3.0.3-branched"),
    ("3.0.4", "3.0.4-branched", "tag 3.0.4-branched"),
    ("3.1.0", "3.1.0-branched", "tag 3.1.0-branched"),
    ("3.1.1", "3.1.0-branched", "3.1-testing; headers of tag 3.1.0-branched"),
    ("3.1.2", "3.1.0-branched", "3.1-testing; headers of tag 3.1.0-branched"),
    ("3.1.3", "3.1.0-branched", "3.1-testing; headers of tag 3.1.0-branched"),
    ("3.1.4", "3.1.0-branched", "3.1-testing; headers of tag 3.1.0-branched"),
    ("3.2.0", "3.2.0-rc6", "last mainline tag before 3.2.0 (3.2.0-rc6)"),
    ("3.2.1", "3.2.0-rc6", "3.2-testing; headers of tag 3.2.0-rc6"),
    ("3.2.2", "3.2.0-rc6", "3.2-testing; headers of tag 3.2.0-rc6"),
    ("3.2.3", "3.2.0-rc6", "3.2-testing; headers of tag 3.2.0-rc6"),
    ("3.3.0", "3.3.0-branched", "tag 3.3.0-branched"),
    ("3.3.1", "3.3.0-branched", "3.3-testing; headers of tag 3.3.0-branched"),
    ("3.3.2", "3.3.0-branched", "3.3-testing; headers of tag 3.3.0-branched"),
    ("3.4.0", "3.4.0-rc3", "last mainline tag before 3.4.0 (3.4.0-rc3)"),
    ("3.4.1", "3.4.0-rc3", "3.4-testing; headers of tag 3.4.0-rc3"),
    ("3.4.2", "3.4.0-rc3", "3.4-testing; headers of tag 3.4.0-rc3"),
    ("3.4.3", "3.4.0-rc3", "3.4-testing; headers of tag 3.4.0-rc3"),
    ("3.4.4", "3.4.0-rc3", "3.4-testing; headers of tag 3.4.0-rc3"),
)

HEAD_REF = "master"


def _git(gitdir: str, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", gitdir, *args], check=True,
                          capture_output=True, text=True).stdout


def find_gitdir(path: str) -> str:
    for cand in (path, os.path.join(path, ".git"), os.path.join(path, "repo")):
        if os.path.isfile(os.path.join(cand, "HEAD")) and os.path.isdir(os.path.join(cand, "objects")):
            return cand
    raise SystemExit("no git directory at %s" % path)


def makefile_version(gitdir: str, ref: str) -> Tuple[int, int, str]:
    text = _git(gitdir, "show", "%s:xen/Makefile" % ref)
    vals: Dict[str, str] = {}
    for key in ("XEN_VERSION", "XEN_SUBVERSION", "XEN_EXTRAVERSION"):
        mo = re.search(r"^(?:export\s+)?%s\s*\??=\s*(.*)$" % key, text, re.M)
        vals[key] = mo.group(1).strip() if mo else ""
    return int(vals["XEN_VERSION"]), int(vals["XEN_SUBVERSION"]), vals["XEN_EXTRAVERSION"]


def list_releases(gitdir: str, head_ref: str = HEAD_REF) -> List[Release]:
    rels: List[Release] = [Release("3.0.0", (3, 0, 0), "RELEASE-3.0.0", True)]
    for name, ref, note in _APPROX_3X:
        rels.append(Release(name, tuple(int(x) for x in name.split(".")), ref, False, note))
    for tag in _git(gitdir, "tag", "--list", "RELEASE-*").split():
        mo = re.fullmatch(r"RELEASE-(\d+(?:\.\d+)+)", tag)
        if not mo:
            continue
        ver = tuple(int(x) for x in mo.group(1).split("."))
        if ver < (4, 0, 0):
            continue
        rels.append(Release(mo.group(1), ver, tag, True))
    major, minor, _extra = makefile_version(gitdir, head_ref)
    rels.append(Release("%d.%d-dev" % (major, minor), (major, minor), head_ref, True,
                        "development head (%s)" % head_ref))
    rels.sort(key=lambda r: (r.xen[:2], 1 if len(r.xen) == 2 else 0, r.xen))
    return rels


def tree_id(gitdir: str, ref: str) -> str:
    return _git(gitdir, "rev-parse", "%s:%s" % (ref, PUBLIC)).strip()


def export_headers(gitdir: str, ref: str, dest: str) -> str:
    """Write ``xen/include/public`` at ``ref`` below ``dest``; return its path."""
    data = subprocess.run(["git", "--git-dir", gitdir, "archive", "--format=tar", ref, PUBLIC],
                          check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        tf.extractall(dest)
    return os.path.join(dest, PUBLIC)


def header_version(incdir: str) -> Optional[str]:
    """Best effort: nothing in the public headers names the release."""
    return None
