"""Inter-process file locks (flock) with bounded waits.

DuckDB lets one process at a time open a database file for writing. Every connection to a local
warehouse file holds ``<database>.lock``, so parallel runs on one machine queue for the file
instead of failing on DuckDB's own lock; connections are short (one load or one partition write),
the LLM work happens outside them.

The holder writes its PID, host, the time it took the lock and its command line into the lock
file, so a process that gives up after ``timeout_s`` can say who holds the lock, since when and
what it runs (a process stopped with SIGSTOP, or hung, keeps its lock: flock is released only when
the holder closes it or dies). The wait polls, so a signal (SIGINT, SIGTERM) ends it at once.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from ..settings import scrub
from .processes import command_line

_POLL_S = 0.05
_TELL_AFTER_S = 2.0
_log = logging.getLogger(__name__)
DEFAULT_LOCK_TIMEOUT_S = 600.0  # chain.toml locks.timeout_s and warehouse.lock_timeout_s, when absent


class LockTimeout(TimeoutError):
    """A lock was not free within the allowed wait; the message names the holder."""


def holder(path: str | os.PathLike) -> dict:
    """What the lock file says about its current (or last) holder: pid, host, since (epoch s), cmd."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace").split("\n", 1)[0]
    except OSError:
        return {}
    text, _, cmd = text.partition(" cmd=")
    out: dict = {"cmd": cmd.strip()} if cmd.strip() else {}
    for part in text.split():
        k, _, v = part.partition("=")
        if k in ("pid", "since"):
            try:
                out[k] = int(v) if k == "pid" else float(v)
            except ValueError:
                continue
        elif k == "host":
            out[k] = v
    return out


def _describe_holder(path: str | os.PathLike) -> str:
    h = holder(path)
    if "pid" not in h:
        return "held by a process that has not written its PID yet"
    where = f" on {h['host']}" if h.get("host") and h["host"] != socket.gethostname() else ""
    cmd = f" ({h['cmd']})" if h.get("cmd") else ""
    held = ""
    if "since" in h:
        at = datetime.fromtimestamp(h["since"]).astimezone().isoformat(timespec="seconds")
        held = f" since {at} ({time.time() - h['since']:.0f} s)"
    return f"held by PID {h['pid']}{where}{cmd}{held}"


def _take(fh, path, timeout_s: float, what: str, setting: str | None, tell_after_s: float) -> None:
    start = time.monotonic()
    deadline = start + max(0.0, timeout_s)
    told = False
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        if time.monotonic() >= deadline:
            knob = f" ({setting} = {timeout_s:g})" if setting else ""
            raise LockTimeout(
                f"{what}: lock {path} not free after waiting {timeout_s:g} s{knob}: {_describe_holder(path)}. "
                "If that process is stopped or hung, end it; if it is working, allow a longer wait.")
        if not told and time.monotonic() - start >= tell_after_s:
            told = True  # a wait longer than a moment is said once, with whom it waits for
            _log.warning("%s: waiting up to %g s for lock %s, %s", what, timeout_s, path, _describe_holder(path))
        time.sleep(_POLL_S)


@contextmanager
def file_lock(path: str | os.PathLike, timeout_s: float | None = None, what: str = "file lock",
              setting: str | None = None, tell_after_s: float = _TELL_AFTER_S) -> Iterator[None]:
    """An exclusive flock on ``path`` (created if needed), released on exit or process death.

    :class:`LockTimeout` is raised after ``timeout_s`` seconds (``None``: the default
    :data:`DEFAULT_LOCK_TIMEOUT_S`; no wait is endless), naming the holder's PID, command and since
    when it holds the lock (``setting`` names the knob that sets the wait, for the message). A wait
longer than ``tell_after_s`` is logged once (a warning naming the holder)."""
    timeout_s = DEFAULT_LOCK_TIMEOUT_S if timeout_s is None else timeout_s
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a+", encoding="utf-8") as fh:
        _take(fh, path, timeout_s, what, setting, tell_after_s)
        try:
            fh.seek(0)
            fh.truncate()
            # the command line without any secret value of the environment (a key pasted into an argument)
            fh.write(f"pid={os.getpid()} host={socket.gethostname()} since={time.time():.3f} cmd={scrub(command_line())}\n")
            fh.flush()
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def is_local(database: str) -> bool:
    """A DuckDB file on this machine (not MotherDuck, not a DuckLake catalog)."""
    return not str(database).startswith(("md:", "motherduck:", "ducklake:"))


@contextmanager
def warehouse_lock(database: str, timeout_s: float | None = DEFAULT_LOCK_TIMEOUT_S) -> Iterator[None]:
    """The lock every connection to a local warehouse file holds (``<database>.lock``)."""
    if not is_local(database):  # MotherDuck and DuckLake serve concurrent clients themselves
        yield
        return
    with file_lock(f"{database}.lock", timeout_s, what=f"warehouse {database}", setting="warehouse.lock_timeout_s"):
        yield
