"""PYREF: the least Python can do for each op, the floor the library is held to.

Each op is ``fcntl.ioctl`` on a prebuilt ``privcmd_hypercall`` pointing at an
mmap'ed hypercall buffer, one ``struct.pack_into`` of the request's header
and inputs, and one ``unpack_from`` of the reply fields the library's result
carries; nothing else (no argument checks, no typed result, no error
translation).  Offsets and sizes come from the running variant's tables
(``handle.abi``), read here with plain ``ctypes`` offsets: the code path is
written by hand, independent of the library's own plans.

Standard library only (runs inside the dom0, Python 3.9+).
"""

import ctypes
import fcntl
import mmap
import os
import struct

IOCTL_PRIVCMD_HYPERCALL = (ord("P") << 8) | (48 << 16)
DOMCTL, SYSCTL, XEN_VERSION = 36, 35, 17


class _Hypercall(ctypes.Structure):
    _fields_ = [("op", ctypes.c_uint64), ("arg", ctypes.c_uint64 * 5)]


def _off(cls, *path):
    at = 0
    for name in path:
        at += getattr(cls, name).offset
        cls = dict((f[0], f[1]) for f in cls._fields_)[name]
    return at


def _scalar(ctype):
    return {1: "B", 2: "H", 4: "I", 8: "Q"}[ctypes.sizeof(ctype)]


class PyRef:
    """The hand-written ops for one variant (``abi``) on the privcmd device."""

    def __init__(self, abi, buffer_path="/dev/xen/hypercall"):
        self.fd = os.open("/dev/xen/privcmd", os.O_RDWR | os.O_CLOEXEC)
        try:
            bfd = os.open(buffer_path, os.O_RDWR | os.O_CLOEXEC)
            self.mem = mmap.mmap(bfd, 4 * 4096 + 1024 * 128, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            os.close(bfd)
        except OSError:
            self.mem = mmap.mmap(-1, 4 * 4096 + 1024 * 128)
        self.mem[:] = bytes(len(self.mem))  # every page touched: Xen writes into them (Arm faults on absent pages)
        self.view = memoryview(self.mem)
        base = ctypes.addressof(ctypes.c_char.from_buffer(self.mem))
        s, k = abi.structs, abi.constants
        self.u = _off(s["xen_domctl"], "u")
        self.su = _off(s["xen_sysctl"], "u")
        div, siv = abi.domctl_interface_version, abi.sysctl_interface_version
        self.req_dom = _Hypercall(DOMCTL, (base, 0, 0, 0, 0))
        self.req_sys = _Hypercall(SYSCTL, (base, 0, 0, 0, 0))
        self.req_ver = _Hypercall(XEN_VERSION, (0, 0, 0, 0, 0))
        head = struct.Struct("<IIH")
        self.k = k
        self.iv = (div, siv)
        self.head = head
        # getdomaininfo: the record's fields the library reads
        info = s["xen_domctl_getdomaininfo"]
        names = [f[0] for f in info._fields_ if not f[0].startswith("_")]
        fmt, pos = ["<"], 0
        for name in sorted(names, key=lambda n: getattr(info, n).offset):
            f = getattr(info, name)
            ctype = dict((x[0], x[1]) for x in info._fields_)[name]
            if f.offset > pos:
                fmt.append(f"{f.offset - pos}x")
            fmt.append(_scalar(ctype) if ctypes.sizeof(ctype) in (1, 2, 4, 8) and not hasattr(ctype, "_length_")
                       else f"{ctypes.sizeof(ctype)}s")
            pos = f.offset + ctypes.sizeof(ctype)
        self.info = struct.Struct("".join(fmt))
        self.max_vcpu_at = sorted(names, key=lambda n: getattr(info, n).offset).index("max_vcpu_id")
        vi = s["xen_domctl_getvcpuinfo"]
        self.vcpu_in = struct.Struct(f"<IIH{self.u - 10}xI")
        self.vcpu_out = struct.Struct("<I3B1xQI")  # vcpu, online, blocked, running, cpu_time, cpu
        assert _off(vi, "cpu_time") == 8 and _off(vi, "cpu") == 16
        self.list_in = struct.Struct(f"<II{self.su - 8}xIIQ")
        self.list_count = _off(s["xen_sysctl"], "u") + _off(s["xen_sysctl_getdomaininfolist"], "num_domains")
        pi = s["xen_sysctl_physinfo"]
        self.phys_off = self.su
        self.phys = struct.Struct(f"<{ctypes.sizeof(pi)}s")
        pnames = ("threads_per_core", "cores_per_socket", "nr_cpus", "max_cpu_id", "nr_nodes", "max_node_id",
                  "cpu_khz", "capabilities", "total_pages", "free_pages", "scrub_pages", "outstanding_pages",
                  "max_mfn")
        fmt, pos = ["<"], 0
        for name in sorted((n for n in pnames if hasattr(pi, n)), key=lambda n: getattr(pi, n).offset):
            f = getattr(pi, name)
            if f.offset > pos:
                fmt.append(f"{f.offset - pos}x")
            fmt.append("I" if f.size == 4 else "Q")
            pos = f.offset + f.size
        self.phys = struct.Struct("".join(fmt))
        so = s["xen_domctl_scheduler_op"]
        assert _off(so, "sched_id") == 0 and _off(so, "cmd") == 4
        self.sched_in = struct.Struct(f"<IIH{self.u - 10}xII")
        self.sched_out = struct.Struct("<HH")
        self.sched_out_off = self.u + _off(so, "u")
        self.records_at = 4096
        self.base = base

    def close(self):
        os.close(self.fd)

    # -- the ops (what the library's same-named op issues and reads) ----------------------
    def xen_version(self):
        v = fcntl.ioctl(self.fd, IOCTL_PRIVCMD_HYPERCALL, self.req_ver, True)
        return v >> 16, v & 0xFFFF

    def getdomaininfo(self, domid=0):
        self.head.pack_into(self.view, 0, self.k["XEN_DOMCTL_getdomaininfo"], self.iv[0], domid)
        fcntl.ioctl(self.fd, IOCTL_PRIVCMD_HYPERCALL, self.req_dom, True)
        return self.info.unpack_from(self.view, self.u)

    def getdomaininfolist(self, max_domains=1024):
        self.list_in.pack_into(self.view, 0, self.k["XEN_SYSCTL_getdomaininfolist"], self.iv[1], 0, max_domains,
                               self.base + self.records_at)
        fcntl.ioctl(self.fd, IOCTL_PRIVCMD_HYPERCALL, self.req_sys, True)
        n = struct.unpack_from("<I", self.view, self.list_count)[0]
        return list(self.info.iter_unpack(self.view[self.records_at:self.records_at + n * self.info.size]))

    def physinfo(self):
        self.head.pack_into(self.view, 0, self.k["XEN_SYSCTL_physinfo"], self.iv[1], 0)
        fcntl.ioctl(self.fd, IOCTL_PRIVCMD_HYPERCALL, self.req_sys, True)
        return self.phys.unpack_from(self.view, self.phys_off)

    def getvcpuinfo(self, domid=0, vcpu=0):
        self.vcpu_in.pack_into(self.view, 0, self.k["XEN_DOMCTL_getvcpuinfo"], self.iv[0], domid, vcpu)
        fcntl.ioctl(self.fd, IOCTL_PRIVCMD_HYPERCALL, self.req_dom, True)
        return self.vcpu_out.unpack_from(self.view, self.u)

    def vcpu_info(self, domid=0):
        """What ``Handle.vcpu_info`` issues: getdomaininfo, then getvcpuinfo per vcpu."""
        n = self.getdomaininfo(domid)[self.max_vcpu_at] + 1
        return [self.getvcpuinfo(domid, v) for v in range(n)]

    def sched_params(self, domid=0):
        """What ``Handle.sched_params`` issues: sched_id, then scheduler_op getinfo."""
        self.head.pack_into(self.view, 0, self.k["XEN_SYSCTL_sched_id"], self.iv[1], 0)
        fcntl.ioctl(self.fd, IOCTL_PRIVCMD_HYPERCALL, self.req_sys, True)
        sid = struct.unpack_from("<I", self.view, self.su)[0]
        self.sched_in.pack_into(self.view, 0, self.k["XEN_DOMCTL_scheduler_op"], self.iv[0], domid, sid,
                                self.k["XEN_DOMCTL_SCHEDOP_getinfo"])
        fcntl.ioctl(self.fd, IOCTL_PRIVCMD_HYPERCALL, self.req_dom, True)
        return self.sched_out.unpack_from(self.view, self.sched_out_off)
