"""Writer for the 'newc' cpio format that Linux initramfs unpacks."""

import os
import stat


class CpioWriter:
    def __init__(self, fobj):
        self.f = fobj
        self.ino = 1000
        self.pos = 0

    def _w(self, b):
        self.f.write(b)
        self.pos += len(b)

    def _pad(self):
        if self.pos % 4:
            self._w(b"\0" * (4 - self.pos % 4))

    def entry(self, name, mode, data=b"", mtime=0, nlink=1):
        name = name.lstrip("/") or "."
        nb = name.encode() + b"\0"
        self.ino += 1
        hdr = "070701" + "".join("%08X" % v for v in (
            self.ino, mode, 0, 0, nlink, int(mtime), len(data), 0, 0, 0, 0, len(nb), 0))
        self._w(hdr.encode())
        self._w(nb)
        self._pad()
        self._w(data)
        self._pad()

    def dir(self, name, mode=0o755, mtime=0):
        self.entry(name, stat.S_IFDIR | mode, mtime=mtime, nlink=2)

    def file(self, name, data, mode=0o644, mtime=0):
        self.entry(name, stat.S_IFREG | mode, data, mtime=mtime)

    def symlink(self, name, target, mtime=0):
        self.entry(name, stat.S_IFLNK | 0o777, target.encode(), mtime=mtime)

    def add_tree(self, root, prefix=""):
        """Add a host directory tree (uid/gid 0) under prefix."""
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel = os.path.relpath(dirpath, root)
            rel = "" if rel == "." else rel
            arc = os.path.join(prefix, rel).strip("/")
            if arc:
                st = os.lstat(dirpath)
                self.dir(arc, stat.S_IMODE(st.st_mode), st.st_mtime)
            for n in sorted(filenames) + sorted(d for d in dirnames if os.path.islink(os.path.join(dirpath, d))):
                p = os.path.join(dirpath, n)
                a = os.path.join(arc, n)
                st = os.lstat(p)
                if stat.S_ISLNK(st.st_mode):
                    self.symlink(a, os.readlink(p), st.st_mtime)
                elif stat.S_ISREG(st.st_mode):
                    with open(p, "rb") as fh:
                        self.file(a, fh.read(), stat.S_IMODE(st.st_mode), st.st_mtime)

    def close(self):
        self.entry("TRAILER!!!", 0, nlink=1)
        self._pad()
