"""A private apt state per Debian suite: lists, cache and downloads live in
the xenvm cache; the system's dpkg database is never used, and of its apt
sources only the Debian mirror is taken (mirrors.py)."""

import os
import re
import time

from .common import ALL_SUITES, XenvmError, log, run, suite_arch
from .mirrors import host_mirrors

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
LIST_MAX_AGE = 24 * 3600


class AptState:
    def __init__(self, cache, suite):
        if suite not in ALL_SUITES:
            raise XenvmError("unknown suite %r (choose from %s)" % (suite, ", ".join(ALL_SUITES)))
        self.suite = suite
        self.dist, self.arch = suite_arch(suite)
        self.root = os.path.join(cache, "apt", suite)
        self.pool = os.path.join(cache, "debs")
        for d in ("lists/partial", "cache/archives/partial", "etc/sources.list.d",
                  "etc/preferences.d", "etc/apt.conf.d", "log"):
            os.makedirs(os.path.join(self.root, d), exist_ok=True)
        os.makedirs(self.pool, exist_ok=True)
        self.status = os.path.join(self.root, "status")
        if not os.path.exists(self.status):
            open(self.status, "w").close()
        self._write_sources()

    def _write_sources(self):
        s = self.dist
        lines = []
        a = self.arch.deb
        mirror, security = host_mirrors()
        signed = "[arch=%s signed-by=%s]" % (a, KEYRING) if os.path.exists(KEYRING) else "[arch=%s]" % a
        lines.append("deb %s %s %s main" % (signed, mirror, s))
        if s != "sid":
            lines.append("deb %s %s %s-updates main" % (signed, mirror, s))
            lines.append("deb %s %s %s-security main" % (signed, security, s))
        text = "\n".join(lines) + "\n"
        path = os.path.join(self.root, "etc", "sources.list")
        old = open(path).read() if os.path.exists(path) else None
        if old != text:
            with open(path, "w") as f:
                f.write(text)
            stamp = os.path.join(self.root, "updated")
            if os.path.exists(stamp):
                os.unlink(stamp)

    def opts(self):
        r = self.root
        o = {
            "Dir::Etc::sourcelist": os.path.join(r, "etc", "sources.list"),
            "Dir::Etc::sourceparts": os.path.join(r, "etc", "sources.list.d"),
            "Dir::Etc::preferences": os.path.join(r, "etc", "preferences"),
            "Dir::Etc::preferencesparts": os.path.join(r, "etc", "preferences.d"),
            "Dir::State": r,
            "Dir::State::Lists": os.path.join(r, "lists"),
            "Dir::State::status": self.status,
            "Dir::State::extended_states": os.path.join(r, "extended_states"),
            "Dir::Cache": os.path.join(r, "cache"),
            "Dir::Log": os.path.join(r, "log"),
            "Debug::NoLocking": "1",
            "APT::Architecture": self.arch.deb,
            "APT::Architectures": self.arch.deb,
            "APT::Install-Recommends": "0",
            "APT::Install-Suggests": "0",
            "APT::Sandbox::User": "root",
            "Acquire::Languages": "none",
            "Acquire::Check-Valid-Until": "false",
            "Acquire::Retries": "3",
        }
        args = []
        for k, v in o.items():
            args += ["-o", "%s=%s" % (k, v)]
        return args

    def apt_get(self, *args, **kw):
        return run(["apt-get", "-q"] + self.opts() + list(args), **kw)

    def apt_cache(self, *args, **kw):
        kw.setdefault("capture", True)
        return run(["apt-cache"] + self.opts() + list(args), **kw)

    def update(self, force=False):
        stamp = os.path.join(self.root, "updated")
        if not force and os.path.exists(stamp) and \
                time.time() - os.path.getmtime(stamp) < LIST_MAX_AGE:
            return False
        log("%s: apt-get update (private state in %s)" % (self.suite, self.root))
        res = self.apt_get("update", check=False, capture=True)
        out = (res.stdout or "") + (res.stderr or "")
        if res.returncode != 0 or re.search(r"^(E:|W: GPG error|W: Failed to fetch)", out, re.M):
            if os.path.exists(stamp):
                log("%s: warning: apt-get update failed; using the lists from %s:\n%s" % (
                    self.suite, time.ctime(os.path.getmtime(stamp)), out[-800:]))
                return False
            raise XenvmError("apt-get update for suite %s failed:\n%s" % (self.suite, out[-3000:]))
        open(stamp, "w").close()
        return True

    # ---- queries -------------------------------------------------------------
    def candidate(self, pkg):
        out = self.apt_cache("policy", pkg).stdout
        m = re.search(r"Candidate:\s*(\S+)", out)
        if not m or m.group(1) == "(none)":
            return None
        return m.group(1)

    def pkgnames(self, prefix):
        return sorted(set(self.apt_cache("pkgnames", prefix).stdout.split()))

    def depends(self, pkg):
        """Direct Depends/Pre-Depends package names of pkg (first alternative)."""
        out = self.apt_cache("depends", "--no-recommends", "--no-suggests",
                             "--no-conflicts", "--no-breaks", "--no-replaces",
                             "--no-enhances", pkg).stdout
        deps = []
        for line in out.splitlines():
            m = re.match(r"\s+\|?(?:Pre)?Depends:\s+<?([^\s>]+)>?", line)
            if m:
                deps.append(m.group(1))
        return deps

    def resolve_closure(self, roots):
        """Packages and versions apt would install on an empty system."""
        res = self.apt_get("install", "-s", "--no-install-recommends", *roots, capture=True)
        pkgs = {}
        for line in res.stdout.splitlines():
            m = re.match(r"Inst (\S+) \((\S+) ", line)
            if m:
                pkgs[m.group(1)] = m.group(2)
        if not pkgs:
            raise XenvmError("apt could not resolve %s in %s:\n%s" % (
                " ".join(roots), self.suite, res.stdout[-2000:]))
        return pkgs

    def deb_filename(self, pkg, ver):
        # apt-get download names files pkg_ver_arch.deb with ':' escaped as %3a
        for arch in (self.arch.deb, "all"):
            p = os.path.join(self.pool, "%s_%s_%s.deb" % (pkg, ver.replace(":", "%3a"), arch))
            if os.path.exists(p):
                return p
        return None

    def download(self, pkgs):
        """pkgs: {name: version}. Returns {name: path to .deb}."""
        missing = [(p, v) for p, v in sorted(pkgs.items()) if not self.deb_filename(p, v)]
        if missing:
            log("%s: downloading %d packages" % (self.suite, len(missing)))
            self.apt_get("download", *["%s=%s" % pv for pv in missing], cwd=self.pool,
                         capture=True)
        out = {}
        for p, v in pkgs.items():
            f = self.deb_filename(p, v)
            if not f:
                raise XenvmError("download of %s=%s (%s) produced no file" % (p, v, self.suite))
            out[p] = f
        return out
