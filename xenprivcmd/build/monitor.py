"""On-shutdown actions: what becomes of a guest once it shuts down, as xl's monitor does it.

The hypervisor only marks a domain shut down (with the reason its guest gave:
poweroff, reboot, crash, ...) and leaves it there; a toolstack acts on it.  ``xl create``
leaves a process behind for each guest (``xl_vmcontrol.c`` ``create_domain``, daemonized,
its log ``/var/log/xen/xl-NAME.log``) that waits for libxl's domain-death event and then
(``handle_domain_death``) destroys the domain, builds it again from the same config or
leaves it, per the config's ``on_poweroff`` / ``on_reboot`` / ``on_crash``.  This module
is that monitor:

* :class:`Monitor` watches one domain from this process: it wakes on xenstored's
  ``@releaseDomain`` watch (fired when any domain shuts down, dies or goes; see
  :mod:`xenprivcmd.store`), and at least every :data:`POLL_SECONDS`, reads the domain's
  state (``getdomaininfo``) and, once it is shut down, acts per :func:`action_for`:

  - ``destroy``: the domain destroyed and its xenstore nodes removed
    (:func:`xenprivcmd.control.destroy`: ``/local/domain/N``, ``/vm/UUID``);
  - ``restart``: the same, then the same config built again
    (:func:`xenprivcmd.build.create.create`): a new domid, the same name and uuid (xl
    keeps the uuid too); the monitor follows the new domain.  More than
    :data:`RESTART_LIMIT` restarts within :data:`RESTART_WINDOW` seconds (a guest that
    crashes as it boots) leave it destroyed, not built again;
  - ``preserve``: left as it is (shut down; ``xl destroy`` or ``xpsh destroy`` ends it).

  A guest that suspended is left to whoever suspends it (xl's monitor ends there too).
  A domain destroyed by someone else, or dying, ends the monitor (its xenstore nodes
  removed if still there and still its own).
* :func:`spawn` leaves the monitor as a detached process (double fork, a session of its
  own, ``/`` as its directory, stdin from a pipe that hands it the config, stdout and
  stderr to its log: ``/var/log/xen/xpsh-NAME.log`` where that directory exists, else
  nowhere); it runs ``python3 -m xenprivcmd.build.monitor`` and ends with the domain.
  This is what :meth:`Handle.create(config, monitor=True) <xenprivcmd.Handle.create>`
  and ``xpsh create`` (unless ``--no-monitor``) do on a dom0; on the simulator the
  monitor is a thread of this process (:meth:`Monitor.start`).

The reasons xl has keys for that :class:`~xenprivcmd.build.config.DomainConfig` does not
read (``on_watchdog``, ``on_soft_reset``: refused by name in a config) get xl's default
for watchdog (``destroy``); a soft reset, which xenprivcmd cannot do, is preserved (xl's
default would reset it).  xl's other actions (``rename-restart``, ``coredump-*``,
``soft-reset``) are refused by name when the config is read.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from ..errors import ConfigError, MonitorError, NoSuchDomain, NotSupported

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, List, Optional, Tuple

    from ..handle import Handle
    from .config import DomainConfig

__all__ = ["Monitor", "MonitorError", "action_for", "spawn", "start", "log_path", "REASON_KEYS", "OTHER_REASONS",
           "POLL_SECONDS", "RESTART_LIMIT", "RESTART_WINDOW", "OUTCOMES"]

#: The config key that says what to do for each shutdown reason.
REASON_KEYS = {"poweroff": "on_poweroff", "reboot": "on_reboot", "crash": "on_crash"}
#: The action for reasons the config has no key for (``suspend``: none, the monitor ends).
OTHER_REASONS = {"watchdog": "destroy", "soft_reset": "preserve", "suspend": None}
#: The longest the monitor goes without reading the domain's state (the watch wakes it sooner).
POLL_SECONDS = 5.0
#: At most this many restarts within RESTART_WINDOW seconds; then the domain stays destroyed.
RESTART_LIMIT = 10
RESTART_WINDOW = 60.0
#: How a monitor ends (:attr:`Monitor.outcome`).
OUTCOMES = ("destroyed", "preserved", "suspended", "gone", "failed", "stopped")
#: Seconds :func:`spawn` waits for the new monitor to say it is watching.
READY_SECONDS = 60.0


def action_for(config: DomainConfig, reason: Optional[str]) -> Optional[str]:
    """What a domain built from ``config`` gets when it shuts down for ``reason`` (a
    :attr:`~xenprivcmd.types.DomainInfo.shutdown_reason`): ``"destroy"``, ``"restart"``,
    ``"preserve"``, or ``None`` (suspend: nothing).  An unknown reason is destroyed, as xl
    does."""
    key = REASON_KEYS.get(reason or "")
    if key is not None:
        return str(getattr(config, key))
    if reason in OTHER_REASONS:
        return OTHER_REASONS[reason]
    return "destroy"


class Monitor:
    """The on-shutdown monitor of domain ``domid``, built from ``config`` (see the module
    doc).  ``log(line)`` hears what it does.  :meth:`run` watches until the domain's end;
    :meth:`start` does it in a daemon thread.

    Raises ``TypeError`` for a config that is not a
    :class:`~xenprivcmd.build.config.DomainConfig`, ``ValueError`` for a domid that is not a
    guest's, :class:`~xenprivcmd.errors.NoSuchDomain` when the domain does not exist.
    """

    def __init__(self, xen: Handle, config: DomainConfig, domid: int, *,
                 log: Optional[Callable[[str], None]] = None, poll: float = POLL_SECONDS) -> None:
        from .config import DomainConfig

        if not isinstance(config, DomainConfig):
            raise TypeError(f"monitor: config must be a DomainConfig, not {type(config).__name__}")
        if isinstance(domid, bool) or not isinstance(domid, int) or not 1 <= domid < 0x7FF0:
            raise ValueError(f"monitor: domid must be a guest's (1..32751), not {domid!r}")
        if isinstance(poll, bool) or not isinstance(poll, (int, float)) or not poll > 0:
            raise ValueError(f"monitor: poll must be a number of seconds > 0, not {poll!r}")
        info = xen.domain_info(domid, name=False)
        if config.uuid is None:
            config = config.replace(uuid=info.uuid)
        elif config.uuid != info.uuid:
            raise ValueError(f"monitor: domain {domid} has uuid {info.uuid}, not the config's {config.uuid}")
        self.xen = xen
        self.config = config
        self.domid = domid
        self.poll = float(poll)
        self.log = log or (lambda _line: None)
        #: (domid, reason, action) of each shutdown acted on
        self.history: List[Tuple[int, Optional[str], Optional[str]]] = []
        self.restarts = 0
        self.outcome: Optional[str] = None
        self.error: Optional[BaseException] = None
        self._stop = threading.Event()
        self._starts: List[float] = []
        self.thread: Optional[threading.Thread] = None

    # -- one look at the domain --------------------------------------------------------
    def check(self) -> Optional[str]:
        """Look at the domain once and act: ``None`` while it runs (or after a restart:
        the monitor follows the new domain), else the outcome (one of :data:`OUTCOMES`)."""
        from .. import control

        domid = self.domid
        try:
            info = self.xen.domain_info(domid, name=False)
        except NoSuchDomain:
            info = None
        if info is None or info.uuid != self.config.uuid or info.dying:
            self.log(f"domain {domid} ({self.config.name}) is " + ("dying" if info is not None and info.dying
                                                                    else "gone") + ": nothing to do")
            self._forget(domid)
            return "gone"
        if not info.shutdown:
            return None
        reason = info.shutdown_reason
        action = action_for(self.config, reason)
        self.history.append((domid, reason, action))
        self.log(f"domain {domid} ({self.config.name}) shut down ({reason}): {action or 'nothing'}")
        if action is None:
            return "suspended"
        if action == "preserve":
            return "preserved"
        try:
            control.destroy(self.xen, domid)
        except NoSuchDomain:
            self._forget(domid)
        if action == "destroy":
            return "destroyed"
        now = time.monotonic()
        self._starts = [t for t in self._starts if now - t < RESTART_WINDOW] + [now]
        if len(self._starts) > RESTART_LIMIT:
            self.log(f"{self.config.name}: restarted {RESTART_LIMIT} times within {RESTART_WINDOW:g} s: "
                     "left destroyed")
            return "destroyed"
        from .create import create

        try:
            new = create(self.xen, self.config)
        except Exception as exc:  # noqa: BLE001 - the outcome says it; the log has why
            self.error = exc
            self.log(f"{self.config.name}: restart failed: {exc}")
            return "failed"
        self.domid = new.domid
        self.restarts += 1
        self.log(f"{self.config.name}: restarted as domain {new.domid}")
        return None

    def _forget(self, domid: int) -> None:
        """Remove the xenstore nodes of a domain that went without its toolstack, if they
        are still there and still this config's (``/local/domain/N/vm`` names its uuid;
        without ``/local/domain/N``, ``/vm/UUID`` when no domain has the uuid now)."""
        from .. import control

        try:
            store = self.xen.xenstore()
        except OSError:
            return
        try:
            vm = f"/vm/{self.config.uuid}"
            try:
                mine = bytes(store.read(f"/local/domain/{domid}/vm")).decode("utf-8", "replace") == vm
            except OSError:
                mine = not any(i.uuid == self.config.uuid for i in self.xen.domains(names=False))
                if mine:
                    try:
                        store.rm(vm)
                    except OSError:
                        pass
                return
            if mine:
                control.forget(store, domid, vm)
        finally:
            store.close()

    # -- watching ----------------------------------------------------------------------
    def run(self, ready: Optional[Callable[[], None]] = None) -> str:
        """Watch until the domain's end (or :meth:`stop`); the outcome (also
        :attr:`outcome`).  ``ready()`` is called once the watch is set and the domain was
        looked at.  An unexpected error ends it with ``"failed"`` (:attr:`error`)."""
        store = watch = None
        try:
            try:
                store = self.xen.xenstore()
                watch = store.watch("@releaseDomain")
                watch.next(2.0)  # xenstored's own first event
            except (OSError, ValueError, AttributeError):  # no xenstore watches: the poll alone
                watch = None
            outcome = self.check()
            if ready is not None:
                ready()
            while outcome is None:
                if self._stop.is_set():
                    outcome = "stopped"
                    break
                if watch is not None:
                    try:
                        fired = watch.next(self.poll)
                        while fired is not None and watch.next(0) is not None:
                            pass
                    except ValueError:  # the watch (its connection) was closed
                        watch = None
                else:
                    self._stop.wait(self.poll)
                if self._stop.is_set():
                    outcome = "stopped"
                    break
                outcome = self.check()
        except Exception as exc:  # noqa: BLE001 - recorded: the monitor must end, not hang
            self.error = exc
            self.log(f"{self.config.name}: monitor failed: {type(exc).__name__}: {exc}")
            outcome = "failed"
        finally:
            if watch is not None:
                try:
                    watch.close()
                except Exception:  # noqa: BLE001, S110 - ending anyway
                    pass
            if store is not None:
                store.close()
        self.outcome = outcome
        self.log(f"{self.config.name}: monitor ends ({outcome})")
        return outcome

    def start(self) -> Monitor:
        """Run it in a daemon thread of this process (:attr:`thread`); returns itself."""
        if self.thread is not None:
            raise ValueError("monitor: already started")
        self.thread = threading.Thread(target=self.run, name=f"xenprivcmd-monitor-{self.config.name}", daemon=True)
        self.thread.start()
        return self

    def stop(self, timeout: Optional[float] = None) -> None:
        """Ask it to end (outcome ``"stopped"``, the domain left as it is) and, when it runs
        in a thread, wait up to ``timeout`` seconds for it."""
        self._stop.set()
        if self.thread is not None:
            self.thread.join(timeout)


def log_path(name: str) -> Optional[str]:
    """Where a detached monitor of a domain called ``name`` logs: ``/var/log/xen/xpsh-NAME.log``
    (as xl's ``xl-NAME.log``), ``None`` (nowhere) without that directory."""
    base = "/var/log/xen"
    if not os.path.isdir(base):
        return None
    return os.path.join(base, "xpsh-" + name.replace("/", "_") + ".log")


def spawn(xen: Handle, config: DomainConfig, domid: int, *, log: Optional[str] = None) -> int:
    """Leave a detached monitor process for domain ``domid`` (built from ``config``); its
    pid, once it watches the domain.  ``log``: its log file (default :func:`log_path`).

    Raises :class:`~xenprivcmd.errors.NotSupported` for a handle that is not this machine's
    privcmd (use :class:`Monitor` in-process), :class:`MonitorError` when the process does
    not start watching within :data:`READY_SECONDS` (its log says why), ``ValueError`` as
    :class:`Monitor` for a bad domid.
    """
    import errno
    import select

    if getattr(xen.transport, "kind", None) != "privcmd":
        raise NotSupported(errno.EOPNOTSUPP, f"monitor: a detached monitor needs this machine's privcmd, "
                           f"not {xen.uri} (use xenprivcmd.build.monitor.Monitor in this process)")
    if isinstance(domid, bool) or not isinstance(domid, int) or not 1 <= domid < 0x7FF0:
        raise ValueError(f"monitor: domid must be a guest's (1..32751), not {domid!r}")
    if config.uuid is None:
        config = config.replace(uuid=xen.domain_info(domid, name=False).uuid)
    logfile = log if log is not None else (log_path(config.name) or os.devnull)
    text = config.to_xl().encode()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    argv = [sys.executable, "-m", "xenprivcmd.build.monitor", "--domid", str(domid), "--uri", xen.uri,
            "--ready-fd", "3"]
    cfg_r, cfg_w = os.pipe()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child (a test sees what it does, not its coverage)
        code = 127
        try:
            os.setsid()
            if os.fork():
                code = 0
            else:
                os.chdir("/")
                out = os.open(logfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                os.dup2(cfg_r, 0)
                os.dup2(out, 1)
                os.dup2(out, 2)
                os.dup2(ready_w, 3)
                os.execve(sys.executable, argv, env)
        except BaseException:  # noqa: BLE001, S110 - the parent sees no ready word
            pass
        finally:
            os._exit(code)
    os.close(cfg_r)
    os.close(ready_w)
    try:
        try:
            os.write(cfg_w, text)
        except OSError:
            pass
        os.close(cfg_w)
        os.waitpid(pid, 0)
        got = b""
        deadline = time.monotonic() + READY_SECONDS
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([ready_r], [], [], left)[0]:
                raise MonitorError(f"monitor: the monitor of domain {domid} did not start within "
                                   f"{READY_SECONDS:g} s (see {logfile})")
            chunk = os.read(ready_r, 64)
            if not chunk:
                break
            got += chunk
    finally:
        os.close(ready_r)
    try:
        return int(got.decode().strip())
    except ValueError:
        raise MonitorError(f"monitor: the monitor of domain {domid} did not start (see {logfile})") from None


def start(xen: Handle, config: DomainConfig, domid: int) -> Optional[int]:
    """Leave the on-shutdown monitor of a domain just built: :func:`spawn` on this
    machine's privcmd (its pid), a :class:`Monitor` thread elsewhere (the simulator;
    ``None``).  If it cannot be started, the domain is destroyed (its xenstore nodes
    removed) and the error raised (:class:`MonitorError`, ...)."""
    from .. import control

    try:
        if getattr(xen.transport, "kind", None) == "privcmd":
            return spawn(xen, config, domid)
        Monitor(xen, config, domid).start()
        return None
    except BaseException:
        try:
            control.destroy(xen, domid)
        except Exception:  # noqa: BLE001, S110 - the monitor's error is what the caller sees
            pass
        raise


def main(argv: Optional[List[str]] = None) -> int:
    """``python3 -m xenprivcmd.build.monitor --domid N [--uri URI] [--ready-fd FD]``, the
    config as xl text on stdin: what :func:`spawn` runs."""
    import argparse

    import xenprivcmd

    from .config import DomainConfig

    ap = argparse.ArgumentParser(prog="python3 -m xenprivcmd.build.monitor",
                                 description="on-shutdown monitor of one domain (config as xl text on stdin)")
    ap.add_argument("--domid", type=int, required=True)
    ap.add_argument("--uri", default=None)
    ap.add_argument("--ready-fd", type=int, default=None)
    args = ap.parse_args(argv)

    def say(line: str) -> None:
        print(time.strftime("%Y-%m-%d %H:%M:%S ") + line, flush=True)

    def ready() -> None:
        if args.ready_fd is not None:
            try:
                os.write(args.ready_fd, f"{os.getpid()}\n".encode())
                os.close(args.ready_fd)
            except OSError:
                pass

    try:
        config = DomainConfig.from_xl(sys.stdin.read(), source="<stdin>")
        with xenprivcmd.open(args.uri) as xen:
            m = Monitor(xen, config, args.domid, log=say)
            say(f"waiting for domain {args.domid} ({config.name}) [pid {os.getpid()}]")
            outcome = m.run(ready=ready)
    except (ConfigError, OSError, ValueError) as exc:
        say(f"error: {exc}")
        return 1
    return 1 if outcome == "failed" else 0


if __name__ == "__main__":
    sys.exit(main())
