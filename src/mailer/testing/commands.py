"""`mailer` commands for the tests, each in a process of its own, as a user runs them,
forked from one server process per test worker that has imported the CLI already: a
command starts in milliseconds instead of paying a second of imports every time.

The child is what `python -m mailer ARGS` would be after its imports: its own process,
working directory, environment (replaced whole) and standard streams (stdin empty), and
`mailer.__main__` run as __main__ (so `spawn`ed sending processes start as they would).
Only a command's start differs: a test that kills one mid-way starts its own process.
Set MAILER_TEST_PLAIN_SUBPROCESS=1 to run every command as a plain subprocess instead."""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import runpy
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_server: subprocess.Popen[str] | None = None
_lock = threading.Lock()


def mailer(
    args: Sequence[str],
    cwd: Path | str,
    env: dict[str, str],
    input: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """`mailer ARGS` run in `cwd` with exactly `env` (and `input` on its stdin), as
    subprocess.run([python, -m, mailer, ...], capture_output=True, text=True) gives it."""
    command = [sys.executable, "-m", "mailer", *args]
    if os.environ.get("MAILER_TEST_PLAIN_SUBPROCESS"):
        stdin = None if input is not None else subprocess.DEVNULL
        return subprocess.run(
            command, cwd=cwd, env=env, input=input, stdin=stdin,
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
    request = {"cwd": str(cwd), "args": list(args), "env": env, "input": input or ""}
    reply = _ask({**request, "timeout": timeout})
    if reply.get("timeout"):
        raise subprocess.TimeoutExpired(command, timeout)
    return subprocess.CompletedProcess(command, reply["status"], reply["stdout"], reply["stderr"])


def _ask(request: dict[str, Any]) -> dict[str, Any]:
    global _server
    with _lock:
        if _server is None or _server.poll() is not None:
            _server = _start()
        assert _server.stdin is not None and _server.stdout is not None
        _server.stdin.write(json.dumps(request) + "\n")
        _server.stdin.flush()
        line = _server.stdout.readline()
    if not line:
        raise RuntimeError("the tests' command server stopped; see its output above")
    reply: dict[str, Any] = json.loads(line)
    return reply


def _start() -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    server = subprocess.Popen(
        [sys.executable, "-m", "mailer.testing.commands"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=clean,
        text=True,
        encoding="utf-8",
    )
    atexit.register(_stop, server)
    return server


def _stop(server: subprocess.Popen[str]) -> None:
    """At the tests' end: the server reads the end of its input and leaves."""
    assert server.stdin is not None and server.stdout is not None
    server.stdin.close()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    server.stdout.close()


# What the commands import when they run (the CLI itself imports none of it, so a
# `mailer send` loads only its own): loaded once here rather than in every child.
PRELOADED = (
    "mailer.cli",
    "mailer.runs",
    "mailer.welcome",
    "mailer.articles",
    "mailer.sources.reach",
    "mailer.report",
    "mailer.subscriber_csv",
    "mailer.supporting",
    "mailer.bounce_processing",
    "mailer.bounce_fetching",
    "mailer.bounces.mailboxes",
    "mailer.fundraising",
    "mailer.editors",
    "mailer.doctor",
    "mailer.catcher",
    "rich.progress",
    "cryptography.hazmat.primitives.asymmetric.rsa",
)


def _serve() -> None:
    """The server: import the CLI and what its commands use once, then fork a child per
    request line."""
    for name in PRELOADED:
        importlib.import_module(name)

    for line in sys.stdin:
        reply = _fork(json.loads(line))
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


def _fork(request: dict[str, Any]) -> dict[str, Any]:
    with (
        tempfile.TemporaryFile() as given,
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
    ):
        given.write(request["input"].encode("utf-8"))
        given.seek(0)
        pid = os.fork()
        if pid == 0:
            _child(request, given.fileno(), out.fileno(), err.fileno())
        status = _wait(pid, request["timeout"])
        if status is None:
            return {"timeout": True}
        out.seek(0)
        err.seek(0)
        return {
            "status": status,
            "stdout": out.read().decode("utf-8", "replace"),
            "stderr": err.read().decode("utf-8", "replace"),
        }


def _child(request: dict[str, Any], given: int, out: int, err: int) -> None:
    status = 1
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.dup2(given, 0)  # empty, as /dev/null, unless the test gave input
        os.dup2(out, 1)
        os.dup2(err, 2)
        sys.argv = ["mailer", *request["args"]]
        try:
            runpy.run_module("mailer", run_name="__main__", alter_sys=True)
            status = 0
        except SystemExit as exc:
            status = _exit_status(exc.code)
        except BaseException:  # as Python itself reports an uncaught exception
            traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(status)


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # sys.exit("message"), as the interpreter does
    return 1


def _wait(pid: int, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return None
        time.sleep(pause)
        pause = min(pause * 2, 0.02)


if __name__ == "__main__":
    _serve()
