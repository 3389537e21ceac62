"""Processes and locks: a lock's holder is named (PID, command, since when), every wait is bounded and
ends on SIGTERM, a process is told apart from one that reused its PID, a child dies with its parent,
a process group is stopped whole, and a run whose process is gone is marked failed."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from duel_assets.lib.sampling.history_index import HistoryIndex
from duel_assets.lib.system import processes
from duel_assets.lib.system.locks import LockTimeout, file_lock, holder

HOLD = """
import sys, time
from duel_assets.lib.system.locks import file_lock
with file_lock(sys.argv[1], 5):
    print("locked", flush=True)
    time.sleep(120)
"""


def _wait_for(what: str, fn, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not (value := fn()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


@pytest.fixture
def stopped_holder(tmp_path):
    """A process holding ``<tmp>/history_index.lock``, stopped with SIGSTOP."""
    lock = tmp_path / "history_index.lock"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(lock), "--tag", "holder-x"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        os.kill(proc.pid, signal.SIGSTOP)
        yield lock, proc
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait()


def test_the_holder_records_pid_host_time_and_command(tmp_path):
    lock = tmp_path / "x.lock"
    before = time.time()
    with file_lock(lock, 1):
        h = holder(lock)
    assert h["pid"] == os.getpid() and h["host"] == socket.gethostname()
    # written to the millisecond, so it may round up past a clock read just after
    assert before - 1 <= h["since"] <= time.time() + 0.001
    assert h["cmd"] == processes.command_line() and h["cmd"]


def test_a_secret_in_the_command_line_never_reaches_the_lock_file(tmp_path, monkeypatch):
    from duel_assets_tests.conftest import CANARY_KEY

    monkeypatch.setenv("LLM_API_KEY", CANARY_KEY)
    monkeypatch.setattr(sys, "argv", ["duel-assets", "calibrate", f"--key={CANARY_KEY}", "x" * 300])
    lock = tmp_path / "x.lock"
    with file_lock(lock, 1):
        pass
    text = lock.read_text()
    assert CANARY_KEY not in text and "duel-assets calibrate --key=" in text
    assert len(holder(lock)["cmd"]) <= 160 and holder(lock)["cmd"].endswith("...")


def test_a_stopped_history_index_holder_fails_the_next_one_in_time_naming_it(stopped_holder, caplog):
    lock, proc = stopped_holder
    index = HistoryIndex(lock.parent, lock_timeout_s=2.5)
    t0 = time.monotonic()
    with pytest.raises(LockTimeout) as err, caplog.at_level("WARNING"):
        with index.locked():
            pass
    assert 2.5 <= time.monotonic() - t0 < 5
    msg = str(err.value)
    assert msg.startswith(f"history index: lock {lock} not free after waiting 2.5 s (locks.timeout_s = 2.5)")
    assert f"held by PID {proc.pid} (-c {lock} --tag holder-x) since " in msg and "\n" not in msg
    # the wait itself was said once, with the holder, before giving up
    waits = [r.getMessage() for r in caplog.records if "waiting up to" in r.getMessage()]
    assert len(waits) == 1 and f"PID {proc.pid}" in waits[0]


def test_a_waiter_ends_on_the_first_sigterm(stopped_holder):
    lock, _ = stopped_holder
    waiter = subprocess.Popen([sys.executable, "-c", "import signal, sys\n"
                               "signal.signal(signal.SIGTERM, signal.default_int_handler)\n"
                               "from duel_assets.lib.system.locks import file_lock\n"
                               "try:\n    with file_lock(sys.argv[1], 300):\n        pass\n"
                               "except KeyboardInterrupt:\n    sys.exit(130)\n", str(lock)],
                              stderr=subprocess.PIPE, text=True)
    _wait_for("the waiter to start waiting", lambda: "waiting up to 300 s" in _peek(waiter), timeout=30)
    t0 = time.monotonic()
    waiter.send_signal(signal.SIGTERM)
    assert waiter.wait(timeout=5) == 130
    assert time.monotonic() - t0 < 5


def _peek(proc: subprocess.Popen) -> str:
    """What the process wrote to stderr so far (non-blocking)."""
    import select

    out = getattr(proc, "_seen", "")
    while proc.stderr and select.select([proc.stderr], [], [], 0)[0]:
        chunk = os.read(proc.stderr.fileno(), 65536).decode(errors="replace")
        if not chunk:
            break
        out += chunk
    proc._seen = out  # type: ignore[attr-defined]
    return out


def test_a_process_is_alive_until_it_ends_and_a_reused_pid_is_not_it():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ident = processes.identity(proc.pid)
        assert ident["pid"] == str(proc.pid) and ident["host"] == socket.gethostname()
        assert processes.alive(proc.pid, ident["started"]) and not processes.gone(ident)
        if ident["started"]:  # /proc is there: another start time is another process
            assert processes.gone({**ident, "started": ident["started"] + "0"})
        assert not processes.gone({**ident, "host": "another-host"})  # not ours to judge
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert processes.gone(ident) and not processes.alive(proc.pid)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_killed_unreaped_child_is_gone():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    ident = processes.identity(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    _wait_for("the zombie", lambda: not processes.alive(proc.pid))  # a zombie until waited for
    assert processes.gone(ident)
    proc.wait()


PARENT = """
import subprocess, sys, time
from duel_assets.lib.system.processes import guarded
child = subprocess.Popen(guarded([sys.executable, "-c", "import time; time.sleep(120)"]))
print(child.pid, flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_guarded_child_dies_with_its_parent_even_on_sigkill():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert processes.alive(child)
    parent.kill()
    parent.wait()
    _wait_for("the child to end with its parent", lambda: not processes.alive(child), timeout=10)


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads /proc")
def test_a_guarded_child_stops_on_sigint_even_when_started_with_sigint_ignored():
    # a shell's background job starts with SIGINT ignored; Dagster then ignores SIGTERM too
    code = ("import signal, subprocess, sys\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "from duel_assets.lib.system.processes import guarded\n"
            "p = subprocess.Popen(guarded([sys.executable, '-c', 'import time; time.sleep(120)']))\n"
            "print(p.pid, flush=True)\nsys.exit(p.wait())\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    try:
        def replaced() -> bool:  # (an exec under way shows an empty command line: not yet)
            cmd = Path(f"/proc/{child}/cmdline").read_bytes()
            return b"time.sleep(120)" in cmd and b"duel_assets.lib.system.processes" not in cmd
        _wait_for("the command to replace the guard", replaced)
        # SIGINT is at its default from the exec on: the process ends on it, handler or not
        os.kill(child, signal.SIGINT)
        assert parent.wait(timeout=10) != 0  # the child ended on SIGINT (KeyboardInterrupt)
    finally:
        for pid in (child, parent.pid):
            if processes.alive(pid):
                os.kill(pid, signal.SIGKILL)
        parent.wait()


GROUP = """
import subprocess, sys, time
# a grandchild that ignores SIGTERM: only SIGKILL ends it
subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"])
time.sleep(120)
"""


def test_stop_group_ends_every_process_of_the_group():
    leader = subprocess.Popen([sys.executable, "-c", GROUP], start_new_session=True)
    _wait_for("the grandchild", lambda: len(_members(leader.pid)) == 2)
    t0 = time.monotonic()
    assert processes.stop_group(leader.pid, grace_s=1.0, reap=leader.poll) is False  # SIGKILL was needed
    assert time.monotonic() - t0 < 8 and _members(leader.pid) == []
    assert not processes.group_alive(leader.pid)


RUNNER = """
import signal, sys
from duel_assets.lib.system.processes import run_own_group
# a known start, whatever dispositions this process inherited (an ignored signal survives exec)
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(s, signal.SIG_DFL)
rc = run_own_group([sys.executable, "-c", sys.argv[1]], grace_s=1.0, on_stop=lambda s: print("stop", s, flush=True))
print("rc", rc, signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, flush=True)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_run_own_group_stops_the_whole_group_on_a_signal_and_restores_the_handlers(sig):
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, GROUP], stdout=subprocess.PIPE, text=True)
    leader = _wait_for("the command's group", lambda: next(
        (p for p in _children(runner.pid) if len(_members(p)) == 2), None))
    family = _members(leader)
    runner.send_signal(sig)
    out, _ = runner.communicate(timeout=15)
    assert out.split("\n")[:2] == [f"stop {signal.Signals(sig).name}", "rc 0 True"]
    assert not any(processes.alive(p) for p in family)


def _children(pid: int) -> list[int]:
    return [int(d.name) for d in Path("/proc").iterdir()
            if d.name.isdigit() and (f := processes._stat_fields(int(d.name))) and int(f[1]) == pid]


def _members(pgid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            fields = processes._stat_fields(int(d.name))
            if len(fields) > 3 and int(fields[2]) == pgid and fields[0] != "Z":
                out.append(int(d.name))
    return out


def test_a_run_whose_process_is_gone_is_marked_failed(tmp_path):
    from duel_assets.defs.runs import dead_run_sensor, dead_runs, fail_dead_runs, process_tags

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = {f"duel/{k}": v for k, v in processes.identity(proc.pid).items()}
    proc.kill()
    proc.wait()
    with dg.instance_for_test(temp_dir=str(tmp_path)) as inst:
        def started_run(tags: dict) -> str:
            job = dg.GraphDefinition("g").to_job()
            return inst.create_run_for_job(job, tags=tags, status=dg.DagsterRunStatus.STARTED).run_id

        gone_run = started_run({**dead, "dagster/partition": "p"})
        live_run = started_run(process_tags())  # this process: alive
        other_host = started_run({**dead, "duel/host": "elsewhere"})
        untagged = started_run({})
        assert {r.run_id for r in dead_runs(inst)} == {gone_run}
        lines = fail_dead_runs(inst)
        assert len(lines) == 1 and gone_run in lines[0] and "partition p" in lines[0] and dead["duel/pid"] in lines[0]
        status = {r: inst.get_run_by_id(r).status for r in (gone_run, live_run, other_host, untagged)}
        assert status[gone_run] == dg.DagsterRunStatus.FAILURE
        assert {status[r] for r in (live_run, other_host, untagged)} == {dg.DagsterRunStatus.STARTED}
        assert fail_dead_runs(inst) == []  # once only
        # the daemon's sensor does the same
        again = started_run(dead)
        result = dead_run_sensor(dg.build_sensor_context(instance=inst))
        assert "1 run(s)" in result.skip_message and inst.get_run_by_id(again).status == dg.DagsterRunStatus.FAILURE

