"""Processes: who this one is, whether another one still runs, and children that cannot outlive
their parent.

A process is named by its PID, its host and its start (the boot it started in and its start time
in clock ticks, from ``/proc``): a PID the kernel has since given to another process is then not
mistaken for the one that was recorded. Where ``/proc`` is missing, the PID alone is checked.
"""
from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _stat_fields(pid: int) -> list[str]:
    """``/proc/<pid>/stat`` after the command name (which may hold spaces): state is [0], start [19]."""
    text = _read(f"/proc/{pid}/stat")
    return text[text.rfind(")") + 2:].split() if ")" in text else []


def start_mark(pid: int) -> str:
    """``<boot id>:<start ticks>`` of ``pid``; "" when ``/proc`` cannot tell."""
    fields = _stat_fields(pid)
    boot = _read("/proc/sys/kernel/random/boot_id").strip()
    return f"{boot}:{fields[19]}" if len(fields) > 19 and boot else ""


def identity(pid: int | None = None) -> dict[str, str]:
    """This process (or ``pid`` on this host): ``pid``, ``host``, ``started`` (see :func:`start_mark`)."""
    pid = os.getpid() if pid is None else pid
    return {"pid": str(pid), "host": socket.gethostname(), "started": start_mark(pid)}


def alive(pid: int, started: str = "") -> bool:
    """Whether process ``pid`` of this host runs (a zombie does not); with ``started``, whether it
    is still the process that mark was taken from."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    fields = _stat_fields(pid)
    if fields and fields[0] == "Z":
        return False
    if started:
        now = start_mark(pid)
        return not now or now == started
    return True


def gone(ident: dict[str, str]) -> bool:
    """Whether the process ``ident`` (from :func:`identity`) names has ended. ``False`` when it
    cannot be told: a process of another host, or a record without a PID."""
    if ident.get("host") != socket.gethostname():
        return False
    try:
        pid = int(ident.get("pid") or 0)
    except ValueError:
        return False
    return pid > 0 and not alive(pid, ident.get("started") or "")


def command_line(argv: list[str] | None = None, limit: int = 160) -> str:
    """The command this process runs, on one line: the program's base name and its arguments,
    cut at ``limit`` characters."""
    argv = list(sys.argv if argv is None else argv) or ["python"]
    text = " ".join([os.path.basename(argv[0]), *argv[1:]])
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def guarded(argv: list[str]) -> list[str]:
    """``argv`` run through this module: the child gets SIGTERM when this process ends, however it
    ends (Linux ``PR_SET_PDEATHSIG``, kept across ``exec``), and SIGINT and SIGTERM act again in it
    (a shell's background job starts with SIGINT ignored, and Dagster maps SIGTERM to SIGINT's
    handler). Unlike a ``preexec_fn``, safe while this process runs threads."""
    return [sys.executable, "-m", "duel_assets.lib.system.processes", str(os.getpid()), "--", *argv]


def end_with_parent(parent: int | None = None) -> bool:
    """Ask the kernel for SIGTERM when this process's parent ends (Linux ``PR_SET_PDEATHSIG``; False
    elsewhere). False, too, when the parent (``parent``, default the current one) has already gone."""
    parent = os.getppid() if parent is None else parent
    if not sys.platform.startswith("linux"):
        return False
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    return os.getppid() == parent  # else the parent ended before the request took effect


def _exec_guarded(args: list[str]) -> None:
    parent, argv = int(args[0]), args[2:]
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if not end_with_parent(parent) and os.getppid() != parent:
        sys.exit(1)
    os.execvp(argv[0], argv)


def _signal_reaches(send: Callable[[int, int], None], target: int) -> bool:
    """Whether signal 0 finds ``target`` (one that exists but is not ours counts as alive)."""
    try:
        send(target, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pid_alive(pid: int) -> bool:
    return _signal_reaches(os.kill, pid)


def group_alive(pgid: int) -> bool:
    return _signal_reaches(os.killpg, pgid)


def stop_group(pgid: int, grace_s: float = 10.0, reap=None, poll_s: float = 0.1) -> bool:
    """SIGTERM to every process of group ``pgid``; SIGKILL to what is left after ``grace_s``.
    ``reap`` (e.g. the leader's ``Popen.poll``) collects this process's own ended child, whose
    zombie would keep the group alive. Returns whether the group was empty within ``grace_s``."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return sig == signal.SIGTERM
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if reap is not None:
                reap()
            if not group_alive(pgid):
                return sig == signal.SIGTERM
            time.sleep(poll_s)
    return False



STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class _Stop(Exception):
    pass


def run_own_group(cmd: list[str], env: dict | None = None, cwd=None, grace_s: float = 10.0,
                  on_stop: Callable[[str], None] | None = None) -> int:
    """Run ``cmd`` (:func:`guarded`) in a new session and process group, and wait for it. SIGTERM,
    SIGINT or SIGHUP to this process (``on_stop`` is told which) or the command's own end stop the
    whole group with :func:`stop_group`, so nothing it started is left behind. Returns the command's
    exit status, 0 when a signal stopped it. This process's signal handlers are restored after."""
    def stop(signum, _frame):
        raise _Stop(signal.Signals(signum).name)

    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig in STOP_SIGNALS:
        signal.signal(sig, stop)
    proc = None
    try:
        proc = subprocess.Popen(guarded(cmd), env=env, cwd=cwd, start_new_session=True)
        while proc.poll() is None:
            time.sleep(0.2)
        return proc.returncode
    except _Stop as e:
        if on_stop is not None:
            on_stop(str(e))
        return 0
    finally:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)  # a second signal does not cut the clean-up short
        try:
            if proc is not None:
                stop_group(proc.pid, grace_s=grace_s, reap=proc.poll)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


if __name__ == "__main__":
    _exec_guarded(sys.argv[1:])
