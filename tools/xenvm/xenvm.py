#!/usr/bin/env python3
"""xenvm: boot a real Debian Xen hypervisor under QEMU and run a command as
root in its dom0.  See README.md next to this file."""

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from xenvmlib import common, hostsetup  # noqa: E402
from xenvmlib.common import ALL_SUITES, ARM64_SUITES, SUITES, XenvmError, log, suite_arch  # noqa: E402

ARCH_ALIASES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


def _apply_arch(args):
    """--arch aarch64 --suite bookworm == --suite bookworm-arm64."""
    arch = ARCH_ALIASES[getattr(args, "arch", None) or "x86_64"]
    suite = getattr(args, "suite", None)
    if suite is None:
        return
    if arch == "aarch64" and suite == "all":
        return
    if arch == "aarch64" and not suite.endswith("-arm64"):
        args.suite = suite + "-arm64"
        if args.suite not in ARM64_SUITES:
            raise XenvmError("no arm64 image for suite %s (arm64 suites: %s)"
                             % (suite, ", ".join(ARM64_SUITES)))
    elif getattr(args, "arch", None) == "x86_64" and suite.endswith("-arm64"):
        raise XenvmError("--arch x86_64 contradicts --suite %s" % suite)


DEFAULT_PIP_DEPS = "pytest"


def _prepare(args, need_pip=False):
    """fetch + build for args.suite; returns (cache, image info)."""
    from xenvmlib import fetch, image
    cache = common.cache_root(args.cache)
    hostsetup.setup(pip_needed=need_pip, arches=(suite_arch(args.suite)[1].name,))
    with common.cache_lock(cache, "build", "fetching/building"):
        t = common.Timer()
        manifest = fetch.fetch(cache, args.suite, refresh=getattr(args, "refresh", False))
        t_fetch = t()
        info = image.build(cache, manifest, force=getattr(args, "rebuild", False))
        t_build = t() - t_fetch
    log("%s: image ready (fetch %.1f s, build %.1f s): %s"
        % (args.suite, t_fetch, t_build, os.path.dirname(info["rootfs"])))
    return cache, info


def cmd_setup(args):
    arch = ARCH_ALIASES[args.arch] if args.arch != "all" else None
    hostsetup.setup(pip_needed=True, quiet_if_ok=False,
                    arches=(arch,) if arch else ("x86_64", "aarch64"))
    return 0


def cmd_fetch(args):
    if args.suite == "all":
        suites = ARM64_SUITES if ARCH_ALIASES[args.arch or "x86_64"] == "aarch64" else SUITES
    else:
        suites = [args.suite]
    for suite in suites:
        args.suite = suite
        _prepare(args)
    return 0


def cmd_info(args):
    cache, info = _prepare(args)
    print("arch: %s" % info.get("arch", "x86_64"))
    for k in ("suite", "xen_version", "python_version", "xen", "vmlinux", "rootfs"):
        print("%s: %s" % (k, info[k]))
    print("kernel: %s %s" % (info["kernel"]["package"], info["kernel"]["version"]))
    for p, v in sorted(info["packages"].items()):
        print("package: %s %s" % (p, v))
    return 0


def cmd_run(args):
    from xenvmlib import pipdeps, runner
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise XenvmError("no command given: xenvm.py run --suite S -- CMD ARGS...")
    for kv in args.env:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", kv):
            raise XenvmError("--env wants NAME=VALUE, got %r" % kv)
    if args.guests < 0:
        raise XenvmError("--guests must be >= 0")
    if args.devices and not args.guests:
        raise XenvmError("--devices gives guest1 a vif and a vbd: it needs --guests 1 or more")
    if args.kvm and args.suite.endswith("-arm64"):
        raise XenvmError("--kvm: arm64 suites run under TCG only")
    share = None if args.no_share else os.path.abspath(args.share or os.getcwd())
    if share and not os.path.isdir(share):
        raise XenvmError("--share %s is not a directory" % share)
    cache, info = _prepare(args, need_pip=bool(args.pip_deps.strip()))
    with common.cache_lock(cache, "build", "fetching wheels"):
        piece = pipdeps.pip_piece(cache, info, args.pip_deps)
    ssh_piece, ssh_files = None, ()
    if args.ssh_port:
        from xenvmlib import sshpiece
        if not args.ssh_dir:
            raise XenvmError("--ssh-port needs --ssh-dir DIR (host_ed25519, authorized_keys)")
        ssh_files = sshpiece.run_files(args.ssh_dir)
        with common.cache_lock(cache, "build", "adding sshd"):
            ssh_piece = sshpiece.ssh_piece(cache, info)
    spec = runner.RunSpec(
        suite=args.suite, command=command, guests=args.guests, xenstore=args.xenstore,
        timeout=args.timeout, share=share, workdir=args.workdir, env=args.env,
        pythonpath=args.pythonpath, pip_piece=piece,
        pip_dir=pipdeps.DOM0_DIR if piece else None, mem_mb=args.memory,
        dom0_mem_mb=args.dom0_mem, smp=args.smp, kvm=args.kvm, console=args.console,
        log_path=args.log, xen_args=args.xen_args, dom0_args=args.dom0_args,
        sched=args.sched, wait_guests=not args.no_wait_guests, guest1_vcpus=args.guest1_vcpus,
        ssh_port=args.ssh_port, ssh_piece=ssh_piece, ssh_files=ssh_files, devices=args.devices)
    return runner.run_vm(cache, info, spec)


def cmd_download(args):
    """The suite's candidate .debs of PKG... (for dpkg -i in dom0), copied to --dest."""
    import shutil

    from xenvmlib.apt import AptState
    cache = common.cache_root(args.cache)
    apt = AptState(cache, args.suite)
    with common.cache_lock(cache, "build", "downloading"):
        apt.update()
        want = {}
        for pkg in args.packages:
            ver = apt.candidate(pkg)
            if ver is None:
                raise XenvmError("suite %s has no package %s" % (args.suite, pkg))
            want[pkg] = ver
        debs = apt.download(want)
    os.makedirs(args.dest, exist_ok=True)
    for pkg in args.packages:
        dst = os.path.join(args.dest, os.path.basename(debs[pkg]))
        shutil.copyfile(debs[pkg], dst)
        print(dst)
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="xenvm.py", description=__doc__)
    p.add_argument("--cache", help="cache directory (default $XENVM_CACHE or "
                   "$XDG_CACHE_HOME/xenprivcmd-xenvm or ~/.cache/xenprivcmd-xenvm)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    # the same options are accepted after the sub-command too
    common_opts = argparse.ArgumentParser(add_help=False)
    common_opts.add_argument("--cache", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common_opts.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                             help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="cmd")

    s = sub.add_parser("setup", parents=[common_opts],
                       help="install the host packages xenvm needs (apt-get)")
    s.add_argument("--arch", default="x86_64", choices=sorted(ARCH_ALIASES) + ["all"],
                   help="the Xen architecture(s) to prepare for (default x86_64; aarch64 "
                   "adds qemu-system-arm)")
    s.set_defaults(func=cmd_setup)

    def suite_opts(sp, allow_all=False):
        sp.add_argument("--suite", required=True,
                        choices=ALL_SUITES + ("all",) if allow_all else ALL_SUITES)
        sp.add_argument("--arch", choices=sorted(ARCH_ALIASES),
                        help="x86_64 (default) or aarch64 (= the suite's -arm64 image: arm64 "
                        "Xen under qemu-system-aarch64)")
        sp.add_argument("--refresh", action="store_true",
                        help="re-run apt-get update for the private apt state now")
        sp.add_argument("--rebuild", action="store_true", help="rebuild the image")

    s = sub.add_parser("fetch", parents=[common_opts],
                       help="download the suite's packages and build its image")
    suite_opts(s, allow_all=True)
    s.set_defaults(func=cmd_fetch)

    s = sub.add_parser("info", parents=[common_opts],
                       help="show the image and package versions of a suite")
    suite_opts(s)
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("download", parents=[common_opts],
                       help="copy the suite's .debs of PKG... to --dest (for dpkg -i in dom0)")
    suite_opts(s)
    s.add_argument("--dest", required=True, help="directory for the .debs")
    s.add_argument("packages", nargs="+", metavar="PKG")
    s.set_defaults(func=cmd_download)

    s = sub.add_parser("run", parents=[common_opts],
                       help="boot Xen + dom0 under QEMU and run CMD in dom0",
                       usage="xenvm.py run --suite S [options] -- CMD [ARGS...]")
    suite_opts(s)
    s.add_argument("--guests", type=int, default=0, metavar="N",
                   help="xl create N PV guests guest1..guestN first (implies --xenstore)")
    s.add_argument("--no-wait-guests", action="store_true",
                   help="start CMD as soon as the guests are listed, without waiting for "
                   "their kernels to boot")
    s.add_argument("--guest1-vcpus", type=int, default=2, metavar="N",
                   help="vcpus of guest1 (default 2; the other guests have 1)")
    s.add_argument("--devices", action="store_true",
                   help="guest1 gets a vif on dom0's bridge xenbr0 (netback; dom0 169.254.77.1, "
                   "the guest .2) and a file-backed vbd xvda (blkback over a loop device), "
                   "set up by xl's hotplug scripts; the guest does a known disk I/O at boot")
    s.add_argument("--xenstore", action="store_true",
                   help="start xenstored, xen-init-dom0 and xenconsoled first")
    s.add_argument("--timeout", type=int, default=900, metavar="SEC",
                   help="hard limit for the whole boot + command (default 900)")
    s.add_argument("--share", metavar="DIR",
                   help="host directory mounted read-write at /host (default: cwd)")
    s.add_argument("--no-share", action="store_true", help="mount no host directory")
    s.add_argument("--workdir", metavar="DIR",
                   help="cwd in dom0 (relative to /host; default /host)")
    s.add_argument("--env", action="append", default=[], metavar="K=V",
                   help="environment variable for CMD (repeatable)")
    s.add_argument("--pythonpath", action="append", default=[], metavar="DIR",
                   help="extra PYTHONPATH entry in dom0 (relative to /host; repeatable)")
    s.add_argument("--pip-deps", default=DEFAULT_PIP_DEPS, metavar="'REQ ...'",
                   help="pure-Python wheels for dom0's python, fetched with the host's pip "
                   "(default %r; '' for none)" % DEFAULT_PIP_DEPS)
    s.add_argument("--memory", type=int, metavar="MB", help="QEMU RAM (default 2048, more "
                   "when many guests)")
    s.add_argument("--dom0-mem", type=int, default=1024, metavar="MB",
                   help="dom0_mem (default 1024)")
    s.add_argument("--smp", type=int, default=2, help="QEMU CPUs (default 2)")
    s.add_argument("--kvm", action="store_true",
                   help="use KVM (only on hosts with real VT-x/AMD-V; TCG otherwise)")
    s.add_argument("--console", action="store_true",
                   help="echo the whole serial console to stderr live")
    s.add_argument("--log", metavar="FILE", help="console log file (default in the cache)")
    s.add_argument("--sched", default="credit",
                   help="Xen scheduler (sched=...; default credit so 'xl sched-credit' has "
                   "data; '' for Xen's own default, credit2)")
    s.add_argument("--xen-args", default="", help="extra Xen command line arguments")
    s.add_argument("--dom0-args", default="", help="extra dom0 kernel command line arguments")
    s.add_argument("--ssh-port", type=int, metavar="PORT",
                   help="run Debian's sshd in dom0, reachable at 127.0.0.1:PORT (QEMU user network)")
    s.add_argument("--ssh-dir", metavar="DIR",
                   help="with --ssh-port: host_ed25519 (dom0's host key) and authorized_keys")
    s.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    s.set_defaults(func=cmd_run)

    args = p.parse_args(argv)
    if not getattr(args, "func", None):
        p.print_help()
        return 2
    common.set_quiet(args.quiet)
    try:
        if args.func is not cmd_setup:
            _apply_arch(args)
        return args.func(args)
    except XenvmError as e:
        sys.stderr.write("xenvm: error: %s\n" % e)
        return e.code
    except KeyboardInterrupt:
        sys.stderr.write("xenvm: interrupted\n")
        return 130
    except Exception:
        import traceback
        traceback.print_exc()
        sys.stderr.write("xenvm: internal error (see the traceback above)\n")
        return 125


if __name__ == "__main__":
    sys.exit(main())
