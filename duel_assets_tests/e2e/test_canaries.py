"""Canaries in every secret variable (URL user info, passwords in DUEL_WAREHOUSE and DUEL_CALL_CACHE in
URL and keyword forms) reach no file and no output of any command."""
import os
import subprocess
from pathlib import Path

from duel_assets.devtools.ports import free_port
from duel_assets.lib.settings import endpoint_id
from duel_assets_tests.conftest import CANARY_KEY, EXE, TEST_CHAIN
from duel_assets_tests.integration.test_secrets_at_rest import PASSWORD, URL_KEY


def _leaks(root: Path, outputs: list[str]) -> list[str]:
    found = []
    canaries = (PASSWORD, URL_KEY, CANARY_KEY)
    for i, text in enumerate(outputs):
        found += [f"output {i}: {c}" for c in canaries if c in text]
    for f in root.rglob("*"):
        found += [f"file name {f}" for c in canaries if c in f.name]
        if f.is_file():
            data = f.read_bytes()
            found += [f"{f}: {c}" for c in canaries if c.encode() in data]
    return found


def test_canaries_in_every_secret_variable_reach_no_file_and_no_output(fresh_standin, tmp_path):
    work = tmp_path / "work"  # the working directory; DUEL_HOME (./.duel) and DAGSTER_HOME inside it
    work.mkdir()
    (work / "chain.toml").write_text(TEST_CHAIN)
    base = {k: v for k, v in os.environ.items()
            if not k.endswith(("_BASE_URL", "_API_KEY")) and not k.startswith(("DUEL_", "DAGSTER_"))}
    base.update(LLM_BASE_URL=fresh_standin.base_url.replace("http://", f"http://duel:{URL_KEY}@"),
                LLM_API_KEY=CANARY_KEY, DUEL_PROGRESS="0")
    outputs: list[str] = []

    def cli(extra: dict, *args: str) -> subprocess.CompletedProcess:
        out = subprocess.run([str(EXE), *args], env={**base, **extra}, cwd=work, capture_output=True, text=True,
                             timeout=300)
        outputs.extend([out.stdout, out.stderr])
        return out

    ok = cli({}, "run", "--partition", "prompts_6_000", "--sample-new")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert f"LLM endpoint: {fresh_standin.base_url} " in ok.stdout  # the credentials left the URL
    listing = cli({}, "calls")
    assert listing.returncode == 0 and endpoint_id(fresh_standin.base_url) in listing.stdout
    pg_url = {"DUEL_CALL_CACHE": f"postgresql://duel:{PASSWORD}@127.0.0.1:{free_port()}/calls"}
    pg_keywords = {"DUEL_CALL_CACHE": f"host=127.0.0.1 port={free_port()} dbname=calls user=duel password={PASSWORD}"}
    lake = {"DUEL_WAREHOUSE": f"ducklake:postgres:host=127.0.0.1 port={free_port()} dbname=lake user=duel "
                              f"password={PASSWORD}", "DUEL_LAKE_DATA_PATH": str(work / "lake")}
    for extra in (pg_url, pg_keywords, lake):
        shown = cli(extra, "config")
        assert shown.returncode == 0 and "***" in shown.stdout, shown.stderr
        failed = cli(extra, "run", "--partition", "prompts_6_000")
        assert failed.returncode != 0 and "Traceback" not in failed.stderr, failed.stderr[-2000:]
    assert "DUEL_CALL_CACHE: cannot connect to PostgreSQL" in outputs[-5]  # the keyword form's run
    refused = cli({"DUEL_CALL_CACHE": f"mysql://duel:{PASSWORD}@db/calls"}, "run")
    assert refused.returncode == 2 and "DUEL_CALL_CACHE: got a mysql:// URL" in refused.stderr
    assert (work / ".duel" / "dagster_home").is_dir() and len(list(work.rglob("*"))) > 20  # really searched
    assert _leaks(work, outputs) == []
