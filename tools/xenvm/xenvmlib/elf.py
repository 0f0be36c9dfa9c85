"""Just enough ELF64 parsing: DT_NEEDED, RUNPATH, PT_INTERP and sections."""

import struct

PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
DT_NEEDED, DT_STRTAB, DT_RPATH, DT_RUNPATH = 1, 5, 15, 29


def is_elf(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


class Elf:
    def __init__(self, path):
        with open(path, "rb") as f:
            self.data = f.read()
        d = self.data
        if d[:4] != b"\x7fELF" or d[4] != 2 or d[5] != 1:
            raise ValueError("%s: not a little-endian ELF64 file" % path)
        (self.e_type, _, _, _, self.phoff, self.shoff, _, _, self.phentsize, self.phnum,
         self.shentsize, self.shnum, self.shstrndx) = struct.unpack_from("<HHIQQQIHHHHHH", d, 16)

    def phdrs(self):
        for i in range(self.phnum):
            yield struct.unpack_from("<IIQQQQQQ", self.data, self.phoff + i * self.phentsize)

    def _vaddr_to_off(self, vaddr):
        for p_type, _, p_off, p_vaddr, _, p_filesz, _, _ in self.phdrs():
            if p_type == PT_LOAD and p_vaddr <= vaddr < p_vaddr + p_filesz:
                return vaddr - p_vaddr + p_off
        return None

    def interp(self):
        for p_type, _, p_off, _, _, p_filesz, _, _ in self.phdrs():
            if p_type == PT_INTERP:
                return self.data[p_off:p_off + p_filesz].rstrip(b"\0").decode()
        return None

    def dynamic(self):
        """Returns (needed list, runpath list)."""
        entries = []
        for p_type, _, p_off, _, _, p_filesz, _, _ in self.phdrs():
            if p_type == PT_DYNAMIC:
                for o in range(p_off, p_off + p_filesz, 16):
                    tag, val = struct.unpack_from("<qQ", self.data, o)
                    if tag == 0:
                        break
                    entries.append((tag, val))
        strtab = [v for t, v in entries if t == DT_STRTAB]
        if not strtab:
            return [], []
        base = self._vaddr_to_off(strtab[0])

        def s(off):
            end = self.data.index(b"\0", base + off)
            return self.data[base + off:end].decode()

        needed = [s(v) for t, v in entries if t == DT_NEEDED]
        runpath = []
        for t, v in entries:
            if t in (DT_RPATH, DT_RUNPATH):
                runpath += [p for p in s(v).split(":") if p]
        return needed, runpath

    def section(self, name):
        d = self.data
        secs = [struct.unpack_from("<IIQQQQIIQQ", d, self.shoff + i * self.shentsize)
                for i in range(self.shnum)]
        if not secs:
            return None
        str_off = secs[self.shstrndx][4]
        for sh in secs:
            n_end = d.index(b"\0", str_off + sh[0])
            if d[str_off + sh[0]:n_end].decode() == name:
                return d[sh[4]:sh[4] + sh[5]]
        return None

    def modinfo(self):
        sec = self.section(".modinfo") or b""
        info = {}
        for item in sec.split(b"\0"):
            if b"=" in item:
                k, v = item.decode(errors="replace").split("=", 1)
                info.setdefault(k, v)
        return info
