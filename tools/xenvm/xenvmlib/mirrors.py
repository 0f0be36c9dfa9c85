"""The Debian mirror to download from: the one this machine's apt is set up with.

No mirror host is written in this project: the archive and security URIs are
read from the host's own apt sources (``/etc/apt/sources.list`` and
``/etc/apt/sources.list.d/*.list`` one-line entries, ``*.sources`` deb822
stanzas), or given by ``$XENVM_MIRROR`` / ``$XENVM_SECURITY_MIRROR``.

The archive is the first ``deb`` source with component ``main`` whose suites
are Debian releases (``bookworm``, ``bookworm-updates``, ...); the security
archive the first whose suite ends in ``-security``.  Python 3.9+ stdlib only.
"""

import glob
import os
import re

from .common import XenvmError

SOURCES = "/etc/apt/sources.list"
SOURCES_D = "/etc/apt/sources.list.d"
#: Debian's release names and aliases: a source whose suites are these is Debian's archive.
_DEBIAN = ("jessie", "stretch", "buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid",
           "oldoldstable", "oldstable", "stable", "testing", "unstable", "experimental")
_RELEASE = re.compile(r"^(?:%s)(?:-(?:updates|backports|proposed-updates|security))?$" % "|".join(_DEBIAN))


def _one_line(text):
    """(types, uris, suites, components) of each one-line entry."""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        line = re.sub(r"\[[^\]]*\]", " ", line)  # [arch=... signed-by=...]
        parts = line.split()
        if len(parts) >= 4:
            yield [parts[0]], [parts[1]], [parts[2]], parts[3:]


def _deb822(text):
    for stanza in re.split(r"\n\s*\n", text):
        fields = {}
        key = None
        for raw in stanza.splitlines():
            if raw.lstrip().startswith("#"):
                continue
            if raw[:1].isspace() and key is not None:
                fields[key] += " " + raw.strip()
                continue
            if ":" in raw:
                key, _, value = raw.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if "uris" in fields and "suites" in fields:
            yield (fields.get("types", "deb").split(), fields["uris"].split(), fields["suites"].split(),
                   fields.get("components", "").split())


def sources(root="/"):
    """Every (types, uris, suites, components) of the host's apt configuration."""
    paths = [os.path.join(root, SOURCES.lstrip("/"))]
    d = os.path.join(root, SOURCES_D.lstrip("/"))
    paths += sorted(glob.glob(os.path.join(d, "*.list"))) + sorted(glob.glob(os.path.join(d, "*.sources")))
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        yield from (_deb822(text) if path.endswith(".sources") else _one_line(text))


def host_mirrors(root="/"):
    """(archive URI, security URI) of the host's apt configuration; the
    environment's ``XENVM_MIRROR`` / ``XENVM_SECURITY_MIRROR`` win."""
    archive = os.environ.get("XENVM_MIRROR")
    security = os.environ.get("XENVM_SECURITY_MIRROR")
    for types, uris, suites, comps in sources(root):
        if "deb" not in types or "main" not in comps or not all(_RELEASE.match(s) for s in suites):
            continue
        if security is None and any(s.endswith("-security") for s in suites):
            security = uris[0]
        if archive is None and any(not s.endswith("-security") for s in suites):
            archive = uris[0]
    if archive is None:
        raise XenvmError("no Debian archive in this machine's apt sources (%s, %s/*); set XENVM_MIRROR"
                         % (SOURCES, SOURCES_D))
    if security is None:
        raise XenvmError("no Debian security archive in this machine's apt sources (%s, %s/*); "
                         "set XENVM_SECURITY_MIRROR" % (SOURCES, SOURCES_D))
    return archive.rstrip("/"), security.rstrip("/")
