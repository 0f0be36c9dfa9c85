"""Interactive xpsh through a pseudo-terminal (stdlib pty): banner and prompt,
help, TAB completion of commands, options and domain names, error lines,
history persisted across sessions, quit/EOF; and plain stdin scripts."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from typing import List, Optional

import pytest

from .test_shell import ROOT, URI, _env

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pty behaviour is Linux's")


class Pty:
    """A child on a pseudo-terminal, with expect()."""

    def __init__(self, args: List[str], env: dict) -> None:
        import pty  # noqa: F401 - imported for its availability check
        import termios

        self.master, slave = os.openpty()
        attrs = termios.tcgetattr(slave)
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        cmd = [sys.executable, "-m", "xenprivcmd"]
        self.proc = subprocess.Popen(cmd + args, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT,
                                     start_new_session=True, close_fds=True)
        os.close(slave)
        self.buf = ""
        self.seen = ""

    def read_some(self, timeout: float) -> bool:
        r, _, _ = select.select([self.master], [], [], timeout)
        if not r:
            return False
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the child is gone
            return False
        if not data:
            return False
        text = data.decode("utf-8", "replace")
        self.buf += text
        self.seen += text
        return True

    def expect(self, pattern: str, timeout: float = 20.0) -> "re.Match[str]":
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            m = rx.search(self.buf)
            if m:
                self.buf = self.buf[m.end():]
                return m
            left = deadline - time.monotonic()
            if left <= 0 or (not self.read_some(min(left, 0.5)) and self.proc.poll() is not None
                             and not self.read_some(0.1)):
                raise AssertionError(f"{pattern!r} not seen; output so far:\n{self.seen!r}")

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def wait(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.read_some(0.1)
        if self.proc.poll() is None:
            self.close()
            raise AssertionError(f"xpsh did not exit; output:\n{self.seen!r}")
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        try:
            os.close(self.master)
        except OSError:
            pass


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def spawn(cache, *args: str, uri: Optional[str] = URI) -> Pty:
    env = _env({"XDG_CACHE_HOME": str(cache), "HOME": str(cache.parent), "TERM": "dumb", "INPUTRC": "/dev/null"})
    p = Pty((["-c", uri] if uri else []) + list(args), env)
    return p


PROMPT = r"xpsh # "


def test_interactive_session_and_history(cache):
    p = spawn(cache)
    try:
        p.expect(r"Welcome to xpsh")
        p.expect(r"'quit' to quit")
        p.expect(PROMPT)
        p.send("help\r")
        p.expect(r"Grouped commands:")
        p.expect(r"vcpupin")
        p.expect(PROMPT)
        # TAB completes a command name ...
        p.send("domi\t")
        p.expect(r"domi(d|nfo)?")
        p.send("\x15")  # ^U: kill the line
        # ... and a domain name
        p.send("dominfo we\t")
        p.expect(r"web1")
        p.send("\r")
        p.expect(r"Name: +web1")
        p.expect(r"UUID: +6f1c2a52-0d5e-4c1b-9f3a-2b7d8e9a0c11")
        p.expect(PROMPT)
        # an option
        p.send("list --st\t")
        p.send("\x15")
        p.send("list --state-pa\t\r")
        p.expect(r"build1 +paused")
        p.expect(PROMPT)
        # an error is one line and the shell goes on
        p.send("dominfo nosuch\r")
        p.expect(r"error: failed to get domain 'nosuch'")
        p.expect(PROMPT)
        p.send("lst\r")
        p.expect(r"error: unknown command: 'lst'; did you mean 'list'\?")
        p.expect(PROMPT)
        p.send("domid db1; domname 3\r")
        p.expect(r"\r?\n2\r?\n")
        p.expect(r"build1")
        p.expect(PROMPT)
        p.send("\x04")  # EOF ends the session too
        assert p.wait() == 0
    finally:
        p.close()
    assert "Traceback" not in p.seen
    hist = (cache / "xpsh" / "history").read_text()
    assert "dominfo web1" in hist and "domid db1; domname 3" in hist

    # A second session sees the history: ^P recalls the last line.
    p = spawn(cache)
    try:
        p.expect(PROMPT)
        p.send("\x10")  # previous-history
        p.expect(r"domid db1; domname 3")
        p.send("\r")
        p.expect(r"build1")
        p.expect(PROMPT)
        p.send("quit\r")
        assert p.wait() == 0
    finally:
        p.close()
    assert "quit" in (cache / "xpsh" / "history").read_text()


def test_interactive_readonly_prompt_and_refusal(cache):
    p = spawn(cache, "-r")
    try:
        p.expect(r"Welcome to xpsh .*\(read-only\)")
        p.expect(r"xpsh > ")
        p.send("suspend web1\r")
        p.expect(r"error: command 'suspend' changes state: refused in read-only mode")
        p.expect(r"xpsh > ")
        p.send("domstate web1\r")
        p.expect(r"running")
        p.send("exit\r")
        assert p.wait() == 0
    finally:
        p.close()


def test_interactive_completion_of_options_values(cache):
    p = spawn(cache)
    try:
        p.expect(PROMPT)
        p.send("vcpupin bui\t")
        p.expect(r"build1")
        p.send("\r")
        p.expect(r" 0 +0-3")
        p.expect(PROMPT)
        p.send("help vcpup\t\r")
        p.expect(r"SYNOPSIS")
        p.expect(PROMPT)
        p.send("quit\r")
        assert p.wait() == 0
    finally:
        p.close()


def test_commands_from_a_pipe():
    cmd = [sys.executable, "-m", "xenprivcmd"]
    script = "domid web1\n# a comment\n\ndominfo nosuch\ndomname 2\n"
    r = subprocess.run(cmd + ["-c", URI], input=script, capture_output=True, text=True, env=_env(), cwd=ROOT,
                       timeout=60)
    assert r.stdout == "1\ndb1\n"
    assert r.stderr.startswith("error: failed to get domain 'nosuch'")
    assert r.returncode == 1


def test_top_live_refreshes_until_interrupted(cache):
    p = spawn(cache, "top", "--delay", "0.05")
    try:
        p.expect(r"\x1b\[H\x1b\[2Jxpsh top - ")
        p.expect(r"\x1b\[H\x1b\[2Jxpsh top - ")
        p.expect(r"web1 -----r +\d+ +\d+\.\d")
        os.killpg(p.proc.pid, signal.SIGINT)
        assert p.wait() == 130  # as README says for Ctrl-C
    finally:
        p.close()
    assert "Traceback" not in p.seen


def test_connect_switches_hypervisor(cache):
    p = spawn(cache, uri="nope:///")
    try:
        p.expect(PROMPT)
        p.send("list\r")
        p.expect(r"error: cannot open 'nope:///': unknown hypervisor URI")
        p.expect(PROMPT)
        p.send(f"connect {URI}\r")
        p.expect(PROMPT)
        p.send("uri; domname 1\r")
        p.expect(re.escape(URI))
        p.expect(r"web1")
        p.send("quit\r")
        assert p.wait() == 0
    finally:
        p.close()
