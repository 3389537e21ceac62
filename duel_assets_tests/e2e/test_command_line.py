"""The command line refuses before it spends: bad configuration (exit 2, one line per error, no
run), unknown partitions, local-looking paths; it forgets partitions whole, names the real error,
shows progress, picks free ports, and prints no credentials."""
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from duel_assets_tests.conftest import CANARY_KEY, EXE, REPO, TEST_CHAIN, query
from duel_assets_tests.unit.test_config import BAD

ROOT = REPO
TABLES = ["sampled_turns", "pr_records", "king_answers", "challenger_answers", "judge_scores", "duel_verdict",
          "exported_buckets"]


def cli_env(tmp: Path, base_url: str = "http://127.0.0.1:9/v1", config: str = TEST_CHAIN) -> dict:
    home = tmp / "duel"
    cfg = tmp / "chain.toml"
    cfg.write_text(config)
    env = {k: v for k, v in os.environ.items()
           if not k.endswith(("_BASE_URL", "_API_KEY")) and k not in ("DUEL_PROGRESS", "HF_TOKEN", "DUEL_MODE")}
    env.update(DUEL_HOME=str(home), DAGSTER_HOME=str(tmp / "dagster_home"), DUEL_CONFIG=str(cfg),
               LLM_BASE_URL=base_url, LLM_API_KEY=CANARY_KEY)
    return env


def cli(env: dict, *args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(EXE), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def runs_in(dagster_home: Path) -> list:
    if not dagster_home.exists():
        return []
    with dg.DagsterInstance.from_config(str(dagster_home)) as inst:
        return list(inst.get_runs())


# each bad chain.toml of test_config.py's list, through `run`
@pytest.mark.parametrize("what,toml,path", BAD[:14], ids=[b[0] for b in BAD[:14]])
def test_run_refuses_a_bad_config_quickly_with_no_run(tmp_path, what, toml, path):
    env = cli_env(tmp_path, config=toml)
    t0 = time.monotonic()
    out = cli(env, "run")
    elapsed = time.monotonic() - t0
    assert out.returncode == 2, out.stderr
    assert elapsed < 10
    lines = out.stderr.strip().splitlines()
    assert any(f"chain.toml: {path}:" in line for line in lines), lines
    assert all(line.startswith("error: ") for line in lines) and "Traceback" not in out.stderr
    assert runs_in(tmp_path / "dagster_home") == [] and not (tmp_path / "duel" / "prompt").exists()


@pytest.mark.parametrize("command", [["sample"], ["ui"], ["demo", "--config", "{cfg}"]])
def test_every_command_that_starts_work_validates_first(tmp_path, command):
    env = cli_env(tmp_path, config="[gate]\nconfidence = 95\n")
    out = cli(env, *[a.replace("{cfg}", env["DUEL_CONFIG"]) for a in command])
    assert out.returncode == 2 and "gate.confidence: got 95" in out.stderr and "Traceback" not in out.stderr
    assert runs_in(tmp_path / "dagster_home") == [] and not (tmp_path / "duel" / "prompt").exists()


def test_the_code_location_refuses_to_load_a_bad_config(tmp_path):
    env = cli_env(tmp_path, config="[judges]\nmodels = \"gpt-4o-mini\"\n")
    (tmp_path / "dagster_home").mkdir()
    dagster = Path(sys.executable).parent / "dagster"
    out = subprocess.run([str(dagster), "definitions", "validate", "-m", "duel_assets.definitions"], env=env,
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "duel_assets configuration is not valid" in text and "judges.models: got \"gpt-4o-mini\"" in text


def test_a_local_looking_path_is_never_tried_on_the_hub(tmp_path):
    (tmp_path / "mydata").mkdir()
    bad = '[[sources]]\nformat = "swe_zero"\npath = "mydata/trajs"\n\n[pr_records]\npath = "./prs.parquet"\n'
    env = cli_env(tmp_path, config=bad)
    t0 = time.monotonic()
    out = cli(env, "sample", cwd=tmp_path)
    assert out.returncode == 2 and time.monotonic() - t0 < 10
    assert 'sources[0].path: got "mydata/trajs", which does not exist' in out.stderr
    assert 'pr_records.path: got "./prs.parquet", which does not exist' in out.stderr


def test_path_kinds(tmp_path, monkeypatch):
    from duel_assets.lib.settings.preflight import path_kind

    monkeypatch.chdir(tmp_path)
    (tmp_path / "here").mkdir()
    for p in ("./x", "/abs/x", "~/x", "x.jsonl", "a/b.parquet", "a/b/c", "data/*.json", "here/sub"):
        assert path_kind(p) == "local", p
    assert path_kind("AlienKevin/SWE-ZERO-12M-trajectories") == "hub"
    assert path_kind("hf://datasets/a/b/x.parquet") == "hf" and path_kind("bundled:x.jsonl") == "bundled"


def test_config_shows_dotenv_chutes_and_train_data_names_without_secrets_or_network(tmp_path):
    env = cli_env(tmp_path, config='[judge]\nmodels = ["j-one", "j-two"]\n[duel]\nmin_margin = 3.0\n')
    del env["LLM_BASE_URL"], env["LLM_API_KEY"]
    (tmp_path / ".env").write_text("CHUTES_API_KEY=cpk-dotenv-secret-42\nHUGGINGFACE_API_KEY=hf_dotenv_99\n")
    out = cli(env, "config", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "https://llm.chutes.ai/v1" in text and "CHUTES_API_KEY (.env)" in text
    assert "HF_TOKEN (HUGGINGFACE_API_KEY (.env))" in text
    assert "j-one, j-two" in text and "(chain.toml [judge])" in text and "(chain.toml [duel])" in text
    assert "cpk-dotenv-secret-42" not in text and "hf_dotenv_99" not in text
    # credentials written into the URL are not printed either
    env["LLM_BASE_URL"] = f"https://user:{CANARY_KEY}@llm.example.com/v1"
    out = cli(env, "config", cwd=tmp_path)
    assert out.returncode == 0 and CANARY_KEY not in out.stdout and "https://***@llm.example.com/v1" in out.stdout
    # no network: the command loads no HTTP client and no Dagster
    probe = ("import sys; from duel_assets.cli import main; rc = main(['config']); "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'openai', 'aiohttp', 'httpx', 'dagster', "
             "'datasets', 'requests', 'urllib3'}), rc)")
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == "[] 0"
    # it checks what run checks before it starts: DUEL_MODE and local paths that must exist
    bad = cli(dict(env, DUEL_MODE="3"), "config", cwd=tmp_path)
    assert bad.returncode == 2 and "DUEL_MODE" in bad.stderr, bad.stderr
    (tmp_path / "chain.toml").write_text('[[sources]]\npath = "./no/such/trajs.jsonl"\nformat = "swe_zero"\n')
    bad = cli(env, "config", cwd=tmp_path)
    assert bad.returncode == 2 and "sources[0].path" in bad.stderr and "does not exist" in bad.stderr, bad.stderr


def test_every_subcommand_and_option_has_help():
    import argparse

    from duel_assets.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in sub._choices_actions}
    assert set(helps) == set(sub.choices) and all(helps.values())
    for name, p in sub.choices.items():
        for action in p._actions:
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)
        # `--help` starts with what the command does: the paragraph after the usage lines
        # (compared without whitespace: argparse may wrap a line after a hyphen, as the width allows)
        said = "".join(p.format_help().split("\n\n")[1].split())
        assert p.description and said == "".join(p.description.split()) and len(said) > 40, (name, said)
    import duel_assets.cli

    top = " ".join(parser.format_help().split("\n\n")[1].split())
    assert top == " ".join(duel_assets.cli.__doc__.split("\n\n")[0].split()), top  # the whole paragraph, not its first line


def test_unknown_partitions_are_refused_and_forget_leaves_nothing(tmp_path, fresh_standin):
    env = cli_env(tmp_path, base_url=fresh_standin.base_url, config=TEST_CHAIN.replace("turns_per_file = 6",
                                                                                       "turns_per_file = 3"))
    home, dh = Path(env["DUEL_HOME"]), tmp_path / "dagster_home"
    assert cli(env, "sample", "--prompts", "6").returncode == 0  # prompts_6_000, prompts_6_001
    refused = cli(env, "run", "--partition", "prompts_6_002")
    assert refused.returncode == 2
    assert "no registered partition prompts_6_002" in refused.stderr and "prompts_6_000" in refused.stderr
    assert "--sample-new" in refused.stderr and runs_in(dh) == []
    with dg.DagsterInstance.from_config(str(dh)) as inst:
        assert sorted(inst.get_dynamic_partitions("prompt_files")) == ["prompts_6_000", "prompts_6_001"]
    ok = cli(env, "run", "--partition", "prompts_6_000", "--partition", "extra", "--sample-new", "--resample", "--parallel", "1")
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert CANARY_KEY not in ok.stdout + ok.stderr and f"LLM endpoint: {fresh_standin.base_url}" in ok.stdout
    assert re.search(r"\d+/\d+ \[.*call/s, failed=\d+\]", ok.stderr), ok.stderr[-2000:]  # calls done / total, failures
    runs = [r for r in runs_in(dh) if r.tags.get("dagster/partition")]  # and one duel_report run
    assert len(runs) == 2 and all(r.tags.get("duel/resample") == "true" for r in runs)
    assert "extra" in (home / "report" / "report.md").read_text()
    # forget: unknown keys are refused, a dry run removes nothing, then nothing of the partition is left
    assert cli(env, "forget", "extar").returncode == 2
    dry = cli(env, "forget", "extra", "--dry-run")
    assert dry.returncode == 0 and "would remove" in dry.stdout and (home / "prompt" / "extra.json").exists()
    gone = cli(env, "forget", "extra")
    assert gone.returncode == 0, gone.stderr
    for t in TABLES:
        assert query(home, f"SELECT count(*) FROM duel.{t} WHERE prompt_file = 'extra'") == [(0,)], t
        assert query(home, f"SELECT count(*) FROM duel.{t} WHERE prompt_file = 'prompts_6_000'")[0][0] > 0, t
    left = [p for p in home.rglob("*") if p.is_file() and "extra" in p.name]
    assert left == []
    assert "extra" not in (home / "report" / "report.md").read_text()
    assert "prompts_6_000" in (home / "report" / "report.md").read_text()
    with dg.DagsterInstance.from_config(str(dh)) as inst:
        assert sorted(inst.get_dynamic_partitions("prompt_files")) == ["prompts_6_000", "prompts_6_001"]
        # its run is gone from the instance too (with its events); the other partition's stays
        assert [r.tags.get("dagster/partition") for r in inst.get_runs() if r.tags.get("dagster/partition")] == ["prompts_6_000"]
        assert inst.fetch_materializations(dg.AssetKey("sampled_turns"), limit=10).records[0].partition_key == "prompts_6_000"
    assert "its 1 run(s) and their events" in gone.stdout


def test_the_failure_summary_names_the_underlying_error(duel_env, capsys, monkeypatch):
    from duel_assets.cli import main
    from duel_assets.defs import assets

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(assets.tables, "turn_rows", full_disk)  # what sampled_turns builds its rows with
    monkeypatch.setenv("DUEL_PROGRESS", "0")
    assert main(["run", "--partition", "p", "--sample-new"]) == 1
    err = capsys.readouterr().err
    assert "[p] sampled_turns failed: OSError: [Errno 28] No space left on device" in err
    assert "Error occurred while executing" not in err and "Traceback" not in err

    def storage_full(*a, **k):
        import sqlite3
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.OperationalError as e:
            raise RuntimeError("could not write the run") from e

    monkeypatch.setattr(dg, "materialize", storage_full)
    assert main(["run", "--partition", "p"]) == 1
    err = capsys.readouterr().err
    assert "[p] run failed: OperationalError: database or disk is full" in err and "Traceback" not in err


def test_ui_picks_free_ports_when_the_defaults_are_taken(duel_env, capsys, monkeypatch):
    from duel_assets.cli import main

    monkeypatch.delenv("LLM_BASE_URL")  # no endpoint: the stand-in is started
    from duel_assets.cli import serve

    # the default ports, taken for the whole test: ports this test holds itself (3000 and 8765 may be
    # held, then let go, by another test run on the machine)
    held = []
    for _ in range(2):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        held.append(s)
    ui_default, standin_default = (s.getsockname()[1] for s in held)
    monkeypatch.setattr(serve, "UI_PORT", ui_default)
    monkeypatch.setattr(serve, "STANDIN_PORT", standin_default)
    calls = []
    monkeypatch.setattr(serve, "run_own_group", lambda cmd, env, cwd, **kw: calls.append((cmd, env)) or 0)
    try:
        assert main(["ui"]) == 0
        assert main(["ui", "--port", str(ui_default)]) == 2
    finally:
        for s in held:
            s.close()
    (cmd, env), = calls
    out, err = capsys.readouterr()
    port = int(cmd[cmd.index("-p") + 1])
    standin_port = int(env["LLM_BASE_URL"].split(":")[2].split("/")[0])
    assert port != ui_default and standin_port != standin_default
    assert f"http://127.0.0.1:{port}" in out and f"stand-in on port {standin_port}" in out.lower()
    assert f"--port {ui_default}: already in use" in err


def test_the_standin_logs_a_client_reset_as_one_line(capfd):
    import struct

    from duel_assets.devtools.standin import StandinServer

    with StandinServer() as srv:
        s = socket.create_connection(("127.0.0.1", srv.port))
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{\"model\"")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # RST mid-body
        deadline = time.monotonic() + 5
        err = ""
        while "closed the connection" not in err and time.monotonic() < deadline:
            time.sleep(0.05)
            err += capfd.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "closed the connection (ConnectionResetError)" in lines[0], lines
    assert "Traceback" not in err


def test_a_train_data_config_runs_with_its_own_judges_and_gate(duel_env, instance):
    from duel_assets_tests.conftest import materialize, metadata

    duel_env["config"].write_text(TEST_CHAIN.replace("[judges]\nmodels = [\"standin-judge-1\"]\n", "").replace(
        "[gate]\nresamples = 500\n", "") + '\n[judge]\nmodels = ["standin-judge-1", "standin-judge-fenced"]\n'
        "\n[duel]\nresamples = 300\nmin_margin = 1.5\n")
    res = materialize(instance, "td")
    assert res.success
    judges = query(duel_env["home"], "SELECT DISTINCT judge FROM duel.judge_scores ORDER BY 1")
    assert [j for j, in judges] == ["standin-judge-1", "standin-judge-fenced"]
    gate = metadata(res, "duel_verdict")["gate_settings"]
    assert "min_margin 1.5," in gate and "resamples 300," in gate
