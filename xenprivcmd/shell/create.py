"""xpsh create: build and start a guest from an xl config file (:meth:`xenprivcmd.Handle.create`)."""

from __future__ import annotations

from .parse import Arg, Args, Opt, UsageError
from .registry import _always, command, shell_words

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .session import Session

__all__ = ["cmd_create"]


@command("create", "control", "create a domain from an xl config file",
         "Build and start the guest an xl config file describes (xl.cfg(5) keys: name, uuid, type, memory,"
         " maxmem, vcpus, maxvcpus, cpus, cpu_weight, cap, kernel, ramdisk, cmdline/root/extra, on_poweroff,"
         " on_reboot, on_crash), in pure Python: an x86_64 PV guest's (or on Arm an arm64 guest's, with its"
         " device tree) kernel and ramdisk loaded, its xenstore"
         " entries written as libxl writes them, introduced to xenstored and so to xenconsoled.  --paused leaves"
         " it paused; -c attaches this terminal to its console once it runs.  As xl, it leaves a monitor"
         " behind (a detached process, its log /var/log/xen/xpsh-NAME.log) that acts when the guest shuts down:"
         " on_poweroff/on_reboot/on_crash = destroy (the domain and its xenstore nodes), restart (built again"
         " from the same config: a new id, the same name) or preserve (left shut down); it ends with the"
         " domain.  --no-monitor leaves none (the guest then stays shut down).  With -N the config, kernel and"
         " ramdisk are"
         " checked and the build is described, nothing is created.  A bad config, file or value is one error"
         " line and leaves no domain behind.",
         args=[Arg("file", "str", help="the xl config file")],
         opts=[Opt("paused", "leave the new domain paused", short="p"),
               Opt("console", "attach to its console once it runs (Ctrl-] detaches)", short="c"),
               Opt("no-monitor", "leave no on-shutdown monitor (on_poweroff/on_reboot/on_crash are then not acted on)")],
         changes=_always)
def cmd_create(s: Session, a: Args) -> None:
    from ..build.config import DomainConfig

    h = s.handle
    path = str(a.file)
    try:
        cfg = DomainConfig.from_xl_file(path, arch=h.abi.arch)
    except OSError as exc:
        raise UsageError(f"create: cannot read {path}: {exc.strerror or exc}") from None
    if s.opts.dry_run:
        from ..build.create import Plan, plan

        p = plan(h, cfg)
        out = s.dry_plan
        out.append(f"dry run: 'create' would build domain '{cfg.name}' (uuid {p.uuid}) (not built; the config,"
                   " kernel and ramdisk were checked):")
        if not isinstance(p, Plan):
            from ..build.arm64 import describe

            out.extend(describe(p, paused=bool(a.get("paused"))))
            return
        lay = p.layout
        out.append(f"  createdomain max_vcpus={cfg.maxvcpus}; max_mem {cfg.memory_kib + 1024} KiB; two event channels"
               " (xenstore, console)")
        out.append(f"  set_address_size 64; populate_physmap {lay.total_pages} pages")
        for seg in lay.segments:
            out.append(f"  {seg.name}: pfn {seg.pfn:#x}, {seg.pages} pages at {seg.vstart:#x}")
        out.append(f"  hypercall_init; pin_l4_table; shared info; setvcpucontext (entry {lay.virt_entry:#x});"
               " grant entries 0 and 1")
        out.append("  xenstore: /local/domain/<domid> and /vm/" + str(p.uuid) + "; introduce"
               + ("" if a.get("paused") else "; unpausedomain"))
        if not a.get("no-monitor"):
            out.append(f"  monitor: on_poweroff={cfg.on_poweroff}, on_reboot={cfg.on_reboot}, on_crash={cfg.on_crash}")
        return
    if a.get("console"):
        import os
        import sys

        try:
            tty = os.isatty(sys.stdin.fileno())
        except (AttributeError, ValueError, OSError):
            tty = False
        if not tty:
            raise UsageError("create -c: stdin is not a terminal (run it from one)")
    try:
        info = h.create(cfg, paused=bool(a.get("paused")), monitor=not a.get("no-monitor"))
    except ValueError as exc:
        raise UsageError(f"create: {shell_words(str(exc))}") from None
    s.result({"domain": {"id": info.domid, "name": info.name}, "action": "create", "ok": True,
              "state": info.state}, f"Domain '{info.name}' created (id {info.domid})"
             + (", paused" if info.state == "paused" else "") + "\n")
    if a.get("console"):
        from .console import cmd_console

        cmd_console(s, Args({"domain": str(info.domid)}))
