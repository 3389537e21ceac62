"""Input is read within bounds and fails in one named line: special files are refused before a byte
is read, long lines are skipped without being held, JSON nested past the parser's stack, NaN and
lone surrogates are named, oversized calibration pairs never reach the judges, and partition keys
too long for the files named after them are refused when registered."""
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from duel_assets.lib.calibration import pairs as P
from duel_assets.lib.sampling.prompt_files import PromptFileError, load_prompt_file
from duel_assets.lib.sampling.sources import BadRow, iter_rows, parse_json_line
from duel_assets.lib.settings import ConfigError, SourceSpec, validate_partition_key
from duel_assets.lib.system.bounded import BadJSON, InputRefused, check_json_file, lines, loads, open_regular, read_bounded
from duel_assets.lib.watch import scan_prompt_dir
from duel_assets_tests.conftest import FIXTURES
from duel_assets_tests.e2e.test_command_line import EXE, cli_env

FIX = FIXTURES
GOOD = json.loads((FIX / "calibration_user.jsonl").read_text().splitlines()[0])
DEEP = "[" * 100_000 + "]" * 100_000
SURROGATE = '{"a": "x \\ud800 y"}'


@pytest.fixture
def specials(tmp_path):
    zero = tmp_path / "zero.jsonl"
    zero.symlink_to("/dev/zero")
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    return {"a character device": zero, "a FIFO": fifo, "a directory": tmp_path}


def test_special_files_are_refused_before_reading(specials):
    for kind, path in specials.items():
        with pytest.raises(InputRefused, match=f"is {kind}, not a regular file: refused"):
            read_bounded(path, "input", 1024)


def test_size_is_checked_before_reading_and_long_lines_are_skipped_unheld(tmp_path):
    f = tmp_path / "big.jsonl"
    f.write_bytes(b"short\n" + b"x" * 5_000_000 + b"\nafter\n")
    with pytest.raises(InputRefused, match="is 5000013 bytes, over sampling.max_prompt_file_bytes = 1000: refused"):
        open_regular(f, "prompt file", 1000, "sampling.max_prompt_file_bytes")
    with open_regular(f, "input", 10_000_000) as fh:
        got = list(lines(fh, 1000))
    assert got == [(1, b"short\n"), (2, None), (3, b"after\n")]


def test_json_failures_are_named():
    for text, reason in ((DEEP, "nested deeper"), (SURROGATE, "lone surrogate"), ("{", "Expecting")):
        with pytest.raises(BadJSON, match=reason):
            loads(text)
    with pytest.raises(BadJSON, match="NaN is not a JSON number"):
        loads('{"w": NaN}', allow_nan=False)
    assert loads('{"w": NaN}')["w"] != 0  # sources keep NaN (a reward), refused where it would be sent
    assert loads('"\\ud83d\\ude00 \\\\ud800"') == "\U0001F600 \\ud800"  # a pair, and an escaped backslash


def _pair(**over) -> str:
    return json.dumps({**GOOD, **over})


def test_calibration_lines_are_skipped_with_their_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "MAX_LINE_BYTES", 400_000)
    f = tmp_path / "set.jsonl"
    rows = [_pair(id="ok"), DEEP, _pair(id="nan").replace('"label": "A"', '"label": "A", "w": NaN'),
            _pair(id="sur").replace('"label": "A"', '"label": "A", "x": "\\udc00"'),
            _pair(id="big", a={"content": "x" * (P.MAX_ANSWER_CHARS + 1)}),
            _pair(id="pr", pr_record={"patch": "y" * P.MAX_PR_RECORD_CHARS}),
            _pair(id="line", a={"content": "z" * 500_000})]
    f.write_text("\n".join(rows) + "\n")
    s = P.read_set(f)
    assert [p.id for p in s.pairs] == ["ok"]
    assert [(k.line, k.reason) for k in s.skips] == [(2, "invalid_json"), (3, "invalid_json"), (4, "invalid_json"),
                                                     (5, "a_too_long"), (6, "pr_record_too_long"), (7, "line_too_long")]
    assert "nested deeper" in s.skips[0].detail and "NaN" in s.skips[1].detail and "surrogate" in s.skips[2].detail
    monkeypatch.setattr(P, "MAX_LINES", 3)
    with pytest.raises(P.CalibrationFileError, match="more than 3 lines: refused"):
        P.read_set(f)


def test_prompt_files_name_what_is_wrong(tmp_path):
    turn = {"turn_id": "t1", "instance_id": "a__b-1", "history": [{"role": "user", "content": "fix"}],
            "reference": {"role": "assistant", "content": "```bash\nls\n```"}}
    for name, text, match in (("deep", DEEP, "is not JSON: nested deeper"),
                              ("sur", json.dumps([turn]).replace('"fix"', '"fix \\ud800"'), "is not JSON: holds a lone surrogate")):
        (tmp_path / f"{name}.json").write_text(text)
        with pytest.raises(PromptFileError, match=match):
            load_prompt_file(tmp_path / f"{name}.json")
    (tmp_path / "nan.json").write_text(json.dumps([{**turn, "step": float("nan")}, {**turn, "turn_id": "t2", "step": 2}]))
    loaded = load_prompt_file(tmp_path / "nan.json")
    assert [t.turn_id for t in loaded.turns] == ["t2"] and loaded.skipped == {"invalid_step": 1}


def test_sources_and_pr_records_name_bad_files(tmp_path, specials):
    assert parse_json_line(DEEP).reason == "invalid_json_line" and "surrogate" in parse_json_line(SURROGATE).detail
    with pytest.raises(ConfigError, match="is a character device, not a regular file: refused"):
        list(iter_rows(SourceSpec(format="swe_zero", path=str(specials["a character device"]))))
    deep = tmp_path / "deep.json"
    deep.write_text(DEEP)
    assert [r for _, r in iter_rows(SourceSpec(format="swe_zero", path=str(deep)))] == [
        BadRow("invalid_json_line", "nested deeper than the JSON parser's stack allows")]
    records = tmp_path / "prs.jsonl"
    records.write_text('{"instance_id": "a__b-1", "patch": "p"}\n{"instance_id": "a__b-2", "x": ' + DEEP + "}\n")
    with pytest.raises(InputRefused, match=f"PR records file {records}: line 2 nested deeper"):
        check_json_file(records, "PR records file", 10**9)
    from duel_assets.lib.sampling.pr_records import read_pr_records

    with pytest.raises(ConfigError, match="line 2 nested deeper"):  # DuckDB's schema detection would crash on it
        read_pr_records(str(records), ["a__b-1"])


def test_partition_keys_too_long_for_their_files_are_refused(tmp_path):
    assert validate_partition_key("k" * 100)
    with pytest.raises(ConfigError, match="101 characters, over the 100 a key may have"):
        validate_partition_key("k" * 101)
    (tmp_path / ("k" * 101 + ".json")).write_text("[]")
    (tmp_path / "fine.json").write_text("[]")
    keys, refused = scan_prompt_dir(tmp_path)
    assert keys == ["fine"] and len(refused) == 1 and "over the 100" in refused[0]
    from duel_assets.cli.common import register_partitions

    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as inst:
        with pytest.raises(ConfigError):
            register_partitions(inst, ["ok_key", "k" * 250])
        assert register_partitions(inst, ["ok_key"]) == ["ok_key"]


def _calibrate_peak(env: dict, path: Path) -> tuple[subprocess.CompletedProcess, int]:
    """``duel-assets calibrate path`` and its peak RSS in kB (measured by a parent of its own)."""
    probe = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=120);"
             "sys.stdout.write(p.stdout); sys.stderr.write(p.stderr);"
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(p.returncode)")
    out = subprocess.run([sys.executable, "-c", probe, str(EXE), "calibrate", str(path)], env=env, capture_output=True,
                         text=True, timeout=180)
    *err, peak = out.stderr.strip().splitlines()
    return subprocess.CompletedProcess(out.args, out.returncode, out.stdout, "\n".join(err)), int(peak)


def test_calibrate_on_hostile_files_fails_in_one_line_within_bounded_memory(tmp_path, specials):
    env = cli_env(tmp_path)
    files = {"/dev/zero": specials["a character device"], "a FIFO": specials["a FIFO"]}
    for name, text in (("deep", DEEP), ("nan", _pair().replace('"label": "A"', '"label": "A", "w": NaN')),
                       ("surrogate", _pair().replace('"label": "A"', '"label": "A", "x": "\\ud800"'))):
        files[name] = tmp_path / f"{name}.jsonl"
        files[name].write_text(text + "\n")
    for name, path in files.items():
        out, peak_kb = _calibrate_peak(env, path)
        assert out.returncode == 2, (name, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("error: ") and str(path) in out.stderr
        assert "Traceback" not in out.stderr + out.stdout
        assert peak_kb < 600_000, (name, peak_kb)  # the interpreter and its imports; nothing read whole
