"""Inter-process file locks (flock) with bounded waits.

DuckDB lets one process at a time open a database file for writing. Every connection to a local
warehouse file holds ``<database>.lock``, so parallel runs on one machine queue for the file
instead of failing on DuckDB's own lock; connections are short (one load or one partition write),
the LLM work happens outside them.

The holder writes its PID and the time it took the lock into the lock file, so a writer that gives
up after ``timeout_s`` can say who holds the lock and for how long (a process stopped with SIGSTOP,
or hung, keeps its lock: flock is released only when the holder closes it or dies).
"""
from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_POLL_S = 0.05


class LockTimeout(TimeoutError):
    """A lock was not free within the allowed wait; the message names the holder."""


def holder(path: str | os.PathLike) -> dict:
    """What the lock file says about its current (or last) holder: pid, host, since (epoch s)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return {}
    out: dict = {}
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
    held = f" for {time.time() - h['since']:.0f} s" if "since" in h else ""
    return f"held by PID {h['pid']}{where}{held}"


def _take(fh, path, timeout_s: float | None, what: str, setting: str | None) -> None:
    if timeout_s is None:
        fcntl.flock(fh, fcntl.LOCK_EX)
        return
    deadline = time.monotonic() + max(0.0, timeout_s)
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
        time.sleep(_POLL_S)


@contextmanager
def file_lock(path: str | os.PathLike, timeout_s: float | None = None, what: str = "file lock",
              setting: str | None = None) -> Iterator[None]:
    """An exclusive flock on ``path`` (created if needed), released on exit or process death.

    ``timeout_s=None`` waits for ever; otherwise :class:`LockTimeout` is raised after that many
    seconds, naming the holder's PID and how long it has held the lock (``setting`` names the knob
    that sets the wait, for the message)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a+") as fh:
        _take(fh, path, timeout_s, what, setting)
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid={os.getpid()} host={socket.gethostname()} since={time.time():.3f}\n")
            fh.flush()
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def is_local(database: str) -> bool:
    """A DuckDB file on this machine (not MotherDuck, not a DuckLake catalog)."""
    return not str(database).startswith(("md:", "motherduck:", "ducklake:"))


DEFAULT_LOCK_TIMEOUT_S = 600.0


@contextmanager
def warehouse_lock(database: str, timeout_s: float | None = DEFAULT_LOCK_TIMEOUT_S) -> Iterator[None]:
    """The lock every connection to a local warehouse file holds (``<database>.lock``)."""
    if not is_local(database):  # MotherDuck and DuckLake serve concurrent clients themselves
        yield
        return
    with file_lock(f"{database}.lock", timeout_s, what=f"warehouse {database}", setting="warehouse.lock_timeout_s"):
        yield
