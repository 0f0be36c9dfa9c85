"""``run --ssh-port``: Debian's OpenSSH server in dom0, reachable from the host
only through QEMU's user-mode network (``restrict=on``: the guest reaches
nothing; only the forwarded 127.0.0.1 port reaches the guest's sshd).

The piece (a gzipped cpio appended to the initramfs of such runs) holds the
suite's ``sshd`` (and ``sshd-session``/``sshd-auth`` where the release splits
them), the shared libraries of theirs the image lacks, a ``sshd_config`` and
``/opt/xenvm/ssh/start``, which the command script runs first: it adds the
``sshd`` privilege-separation user and a non-root ``monitor`` user, brings up
``eth0`` as 10.0.2.15/24 (QEMU's user network) and starts sshd on port 22.
Keys come with each run (``--ssh-dir DIR``: ``host_ed25519`` and
``authorized_keys``, copied to ``/xenvm/ssh``), so the host knows the host key
in advance and checks it.
"""

import gzip
import os
import re
import shutil

from . import image as _image
from .apt import AptState
from .common import TOOL_VERSION, XenvmError, key_of, log, suite_arch, write_json
from .cpio import CpioWriter

KEEP_RE = re.compile(r"^(openssh-server|lib|zlib1g)")
SSHD_FILES = ("usr/sbin/sshd", "usr/lib/openssh/sshd-session", "usr/lib/openssh/sshd-auth")
DIR = "opt/xenvm/ssh"

SSHD_CONFIG = """\
# xenvm: sshd in dom0 (run --ssh-port); keys come with the run in /xenvm/ssh
Port 22
ListenAddress 0.0.0.0
HostKey /xenvm/ssh/host_ed25519
AuthorizedKeysFile /xenvm/ssh/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
UseDNS no
PidFile /run/sshd.pid
"""

START = """\
#!/bin/sh
# xenvm: start sshd in dom0 (see tools/xenvm/xenvmlib/sshpiece.py)
grep -q '^sshd:' /etc/passwd || echo 'sshd:x:100:65534:sshd:/run/sshd:/bin/false' >> /etc/passwd
grep -q '^monitor:' /etc/passwd || echo 'monitor:x:1000:65534:monitor:/tmp:/bin/sh' >> /etc/passwd
grep -q '^monitor:' /etc/shadow || echo 'monitor::0:0:99999:7:::' >> /etc/shadow
mkdir -p /run/sshd && chmod 755 /run/sshd
chmod 600 /xenvm/ssh/host_ed25519
ip link set lo up
ip link set eth0 up || { echo "xenvm ssh: no eth0" >&2; exit 1; }
ip addr add 10.0.2.15/24 dev eth0
/usr/sbin/sshd -f /opt/xenvm/ssh/sshd_config -E /run/sshd.log || { cat /run/sshd.log >&2; exit 1; }
"""


def ssh_piece(cache, image):
    """Path of the gzipped cpio with sshd for this image (built once, cached)."""
    suite = image["suite"]
    arch = suite_arch(suite)[1]
    apt = AptState(cache, suite)
    closure = apt.resolve_closure(["openssh-server"])
    pkgs = {p: v for p, v in closure.items() if KEEP_RE.match(p)}
    with open(os.path.abspath(__file__), "rb") as f:
        source = f.read().decode()
    key = key_of([TOOL_VERSION, image["key"], sorted(pkgs.items()), source])
    base = os.path.join(cache, "ssh", "%s-%s" % (suite, key))
    piece = os.path.join(base, "ssh.cpio.gz")
    if os.path.exists(piece):
        return piece
    log("%s: adding OpenSSH's server to the dom0 (%d packages)" % (suite, len(pkgs)))
    debs = apt.download(pkgs)
    fs = _image.FileSet()
    for pkg, deb in sorted(debs.items()):
        fs.add_pkg(pkg, _image.extract_deb(cache, deb))
    selected = set()
    for rel in SSHD_FILES:
        selected.update(fs.resolve(rel) or [])
    if "usr/sbin/sshd" not in selected:
        raise XenvmError("%s: openssh-server has no /usr/sbin/sshd" % suite)
    missing = _image.library_closure(fs, selected, _image.lib_dirs(arch))
    root = image["root"]
    add = sorted(c for c in selected if not os.path.lexists(os.path.join(root, c)))
    tmp = base + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    with open(os.path.join(tmp, "ssh.cpio.gz"), "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz:
            w = CpioWriter(gz)
            dirs = set()
            for c in add + [DIR + "/start"]:
                parts = c.split("/")[:-1]
                for i in range(1, len(parts) + 1):
                    dirs.add("/".join(parts[:i]))
            for d in sorted(dirs):
                w.dir(d)
            for c in add:
                hp = fs.files[c][0]
                if os.path.islink(hp):
                    w.symlink(c, os.readlink(hp))
                else:
                    with open(hp, "rb") as f:
                        w.file(c, f.read(), os.stat(hp).st_mode & 0o7777)
            w.file(DIR + "/sshd_config", SSHD_CONFIG.encode())
            w.file(DIR + "/start", START.encode(), 0o755)
            w.close()
    write_json(os.path.join(tmp, "ssh.json"), {"packages": pkgs, "files": add, "missing": sorted(missing)})
    if missing:
        log("%s: warning: sshd libraries not found: %s" % (suite, ", ".join(sorted(missing))))
    shutil.rmtree(base, ignore_errors=True)
    os.replace(tmp, base)
    return piece


def run_files(ssh_dir):
    """The per-run files (name under /xenvm/ssh, bytes, mode) from ``--ssh-dir``."""
    out = []
    for name, mode in (("host_ed25519", 0o600), ("authorized_keys", 0o644)):
        p = os.path.join(ssh_dir, name)
        if not os.path.isfile(p):
            raise XenvmError("--ssh-dir %s has no %s" % (ssh_dir, name))
        with open(p, "rb") as f:
            out.append((name, f.read(), mode))
    return out
