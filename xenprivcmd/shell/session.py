"""One xpsh session: the connection, global options, output, and running a command."""

from __future__ import annotations

import os
import time

from .. import errors as _errors
from .parse import UsageError, parse_args, suggest
from .registry import COMMANDS, HOMES, resolve, shell_words

TYPE_CHECKING = False
if TYPE_CHECKING:  # json, traceback, typing and trace load only when a run needs them
    from typing import Any, Dict, List, Optional, TextIO, Tuple

    from ..transport.decode import CallRecord
    from ..transport.wrappers import DryRunTransport, TimingTransport
    from .registry import Command

__all__ = ["Session", "Options", "DEFAULT_URI"]

DEFAULT_URI = "xen:///"


class Options:
    """Global options (``xpsh [options] ...``)."""

    def __init__(self, uri: Optional[str] = None, readonly: bool = False, quiet: bool = False, timing: bool = False,
                 json_mode: bool = False, dry_run: bool = False) -> None:
        self.uri = uri
        self.readonly = readonly
        self.quiet = quiet
        self.timing = timing
        self.json = json_mode
        self.dry_run = dry_run


class Session:
    """State shared by the commands of one xpsh run."""

    def __init__(self, opts: Options, stdout: TextIO, stderr: TextIO, handle: Any = None,
                 env: Optional[Dict[str, str]] = None) -> None:
        self.opts = opts
        self.stdout = stdout
        self.stderr = stderr
        self.env = dict(os.environ if env is None else env)
        self._injected = handle
        self._handle: Any = None
        self._orig_transport: Any = None
        self._fresh: Any = None
        self.timer: Optional[TimingTransport] = None
        self.dry: Optional[DryRunTransport] = None
        self.suppress = False
        self.quit = False
        self.failures = 0
        self.interactive = False
        #: -N: the xenstore that records the writes a changing command would make.
        self.dry_store: Any = None
        #: what a command that cannot run dry says it would do, printed as its dry-run report
        self.dry_plan: List[str] = []
        self._dom_cache: Tuple[float, List[str]] = (0.0, [])
        #: (domid, uuid) -> why the domain is in its state, for what this session did to it
        #: (``domstate --reason``: unpaused, user).
        self.reasons: Dict[Tuple[int, str], str] = {}

    # -- connection ---------------------------------------------------------------------------
    @property
    def uri(self) -> str:
        if self.opts.uri:
            return self.opts.uri
        return self.env.get("XPSH_DEFAULT_CONNECT_URI") or DEFAULT_URI

    @property
    def connected(self) -> bool:
        return self._handle is not None

    @property
    def handle(self) -> Any:
        """The open :class:`~xenprivcmd.Handle` (opened on first use)."""
        if self._handle is None:
            h = self._injected
            if h is None:
                h, self._fresh = self._fresh or self._open(self.uri), None
            self._orig_transport = h.transport
            t = h.transport
            if self.opts.timing:
                from ..transport.wrappers import TimingTransport

                t = self.timer = TimingTransport(t)
            if self.opts.dry_run:
                from ..transport.wrappers import DryRunTransport

                t = self.dry = DryRunTransport(t)
            h.transport = t
            self._handle = h
        return self._handle

    @staticmethod
    def _open(uri: str) -> Any:
        import xenprivcmd

        try:
            return xenprivcmd.open(None if uri == DEFAULT_URI else uri)
        except _errors.XenprivcmdError as exc:
            raise UsageError(str(exc)) from None
        except ImportError as exc:
            raise UsageError(f"cannot open {uri!r}: {exc}") from None
        except (ValueError, TypeError, OSError) as exc:
            raise UsageError(f"cannot open {uri!r}: {exc}") from None

    def connect(self, uri: str) -> None:
        """Switch to ``uri``; when it cannot be opened the current connection (and URI) stays."""
        new = self._open(uri)  # UsageError: nothing changed
        self.close()
        self._injected = None
        self.opts.uri = uri
        self._fresh = new
        self.handle  # noqa: B018 - wrap it for -t/-N now

    def close(self) -> None:
        h = self._handle
        if h is None:
            return
        self._handle = None
        if h is self._injected:
            h.transport = self._orig_transport
        else:
            h.close()
        self.timer = self.dry = None

    def hypercalls_issued(self) -> int:
        """Hypercalls that reached the hypervisor (0 when never connected)."""
        if self._handle is None:
            return 0
        from ..transport.wrappers import innermost

        return int(innermost(self._handle.transport).calls)

    # -- output -------------------------------------------------------------------------------
    def write(self, text: str) -> None:
        if self.suppress:
            return
        self.stdout.write(text)

    def line(self, text: str = "") -> None:
        self.write(text + "\n")

    def result(self, data: Any, text: Optional[str] = None) -> None:
        """Emit a command's result: ``data`` as JSON with ``--json``, else ``text``."""
        if self.suppress:
            return
        if self.opts.json:
            import json

            self.stdout.write(json.dumps(data, sort_keys=False, default=str) + "\n")
        elif text is not None:
            self.stdout.write(text if text.endswith("\n") or not text else text + "\n")
        self.stdout.flush()

    def error(self, message: str) -> None:
        self.stderr.write(f"error: {message}\n")
        self.stderr.flush()

    def failed(self, command: str, message: str) -> None:
        """A command failed: its ``error:`` line on stderr and, with ``--json``, a JSON error object
        on stdout, so that every command of a list has its line there."""
        self.error(message)
        if self.opts.json:
            import json

            self.stdout.write(json.dumps({"command": command, "error": message}) + "\n")
            self.stdout.flush()

    # -- domains --------------------------------------------------------------------------------
    def lookup(self, ident: Any) -> Any:
        """A domain by id, name or UUID, or a one-line error naming it."""
        text = str(ident).strip()
        if not text:
            raise UsageError("empty domain name")
        try:
            return self.handle.lookup(text)
        except _errors.NoSuchDomain as exc:
            raise UsageError(f"failed to get domain '{text}': {exc}") from None
        except ValueError as exc:
            raise UsageError(f"failed to get domain '{text}': {exc}") from None

    def domain_words(self) -> List[str]:
        """Domain names and ids for completion (cached for 2 s; never raises)."""
        stamp, words = self._dom_cache
        now = time.monotonic()
        if now - stamp < 2.0 and words:
            return words
        try:
            infos = self.handle.domains(names=True)
        except Exception:
            return words
        out = [i.name for i in infos if i.name] + [str(i.domid) for i in infos]
        self._dom_cache = (now, out)
        return out

    # -- commands -------------------------------------------------------------------------------
    def command(self, word: str) -> Optional[Command]:
        """The command ``word`` names (or an alias of it), None if none.  The module that
        defines it is imported (registering its commands) the first time: a one-shot command
        line loads the modules of its own commands only (registry.HOMES says which)."""
        home = HOMES.get(word)
        if home is not None:
            __import__(f"{__package__}.{home}")
        return resolve(word)

    def commands(self) -> List[Command]:
        """Every command, in help's order (every command module imported)."""
        for home in dict.fromkeys(HOMES.values()):
            __import__(f"{__package__}.{home}")
        return list(COMMANDS.values())

    # -- running commands -----------------------------------------------------------------------
    def execute(self, tokens: List[str]) -> bool:
        """Run one command; report errors; True on success."""
        ok = False
        start = time.perf_counter()
        if self.timer is not None:
            self.timer.take()
        name = tokens[0] if tokens else ""
        try:
            cmd = self.command(name)
            if cmd is None:
                hint = suggest(name, sorted(c.name for c in self.commands()))
                raise UsageError(f"unknown command: '{name}'" + (f"; did you mean '{hint}'?" if hint else ""))
            rest = tokens[1:]
            if "--help" in rest[: rest.index("--") if "--" in rest else len(rest)] and cmd.name != "help":
                rest = [cmd.name]  # CMD --help is help CMD
                cmd = self.command("help") or cmd
            args = parse_args(cmd.name, rest, cmd.args, cmd.opts)
            changing = cmd.changes(args)
            if changing and self.opts.readonly:
                raise UsageError(f"command '{cmd.name}' changes state: refused in read-only mode (-r)")
            dry = changing and self.opts.dry_run
            if dry:
                assert self.handle is not None and self.dry is not None
                self.dry.variant = self.handle.abi
                self.dry.take()
                self.suppress = True
                from ..control import DryStore

                self.handle.store_override = self.dry_store = DryStore(self.handle)
            try:
                cmd.func(self, args)
            finally:
                self.suppress = False
                if self.dry_store is not None:
                    self.dry_store.close()
                    self.handle.store_override = None
            if dry:
                self._report_dry_run(cmd.name)
            ok = True
        except (KeyboardInterrupt, BrokenPipeError):
            raise
        except UsageError as exc:
            self.failed(name, str(exc))
        except (_errors.XenprivcmdError, ValueError, TypeError, OSError, LookupError) as exc:
            self.failed(name, shell_words(_describe(exc)))
            if self.env.get("XPSH_DEBUG"):
                import traceback

                traceback.print_exc(file=self.stderr)
        except Exception as exc:  # a bug: still one line unless debugging
            self.failed(name, f"internal error: {type(exc).__name__}: {exc}")
            if self.env.get("XPSH_DEBUG"):
                import traceback

                traceback.print_exc(file=self.stderr)
        finally:
            self.stdout.flush()
            if self.opts.timing:
                self._report_timing(time.perf_counter() - start)
        if not ok:
            self.failures += 1
        return ok

    def _report_dry_run(self, name: str) -> None:
        assert self.dry is not None
        recs = self.dry.take()
        writes = self.dry_store.writes if self.dry_store is not None else []
        self.dry_store = None
        if self.opts.json:
            self.result({"dry_run": True, "command": name, "hypercalls": [_dry_dict(r) for r in recs],
                         "xenstore": writes})
            return
        plan, self.dry_plan = self.dry_plan, []
        if plan and not recs and not writes:  # a command that described what it would do (create)
            for text in plan:
                self.line(text)
            return
        if not recs and not writes:
            self.line(f"dry run: '{name}' would issue no state-changing hypercall")
            return
        n = len(recs)
        if recs:
            self.line(f"dry run: '{name}' would issue {n} hypercall{'s' if n != 1 else ''} (not issued):")
        for r in recs:
            self.line("  " + r.decoded.describe(addresses=False))
        if writes:
            self.line(f"dry run: '{name}' would make {len(writes)} xenstore change{'s' if len(writes) != 1 else ''}"
                      " (not made):")
        for w in writes:
            self.line("  " + w)

    def _report_timing(self, seconds: float) -> None:
        recs: List[CallRecord] = self.timer.take() if self.timer is not None else []
        if self.opts.json:
            import json

            self.stderr.write(json.dumps({"time_ms": round(seconds * 1e3, 3),
                                          "hypercalls": [_timing_dict(r) for r in recs]}) + "\n")
        else:
            self.stderr.write(f"(Time: {seconds * 1e3:.3f} ms, {len(recs)} hypercall{'s' if len(recs) != 1 else ''})\n")
            for r in recs:
                status = "" if r.error is None else f"  -> {r.error}"
                self.stderr.write(f"  {r.describe():<48} {r.seconds * 1e6:10.1f} us{status}\n")
        self.stderr.flush()


def _dry_dict(r: CallRecord) -> Dict[str, Any]:
    d = r.as_dict()
    return {k: d[k] for k in ("op", "hypercall", "subop", "domid", "fields")}


def _timing_dict(r: CallRecord) -> Dict[str, Any]:
    d = r.as_dict()
    return {"hypercall": d["hypercall"], "subop": d["subop"], "domid": d["domid"],
            "us": round(r.seconds * 1e6, 1), "error": d["error"]}


def _describe(exc: BaseException) -> str:
    msg = str(exc)
    if isinstance(exc, OSError) and not isinstance(exc, _errors.XenError):
        name = None
        if exc.errno is not None:
            import errno as _errno

            name = _errno.errorcode.get(exc.errno)
        msg = exc.strerror or msg
        if name:
            msg = f"{msg} ({name})"
    return msg or type(exc).__name__
