"""What a run delivered, said where the user looks: one line per partition on the terminal, a
non-zero exit (and a failed asset check) when a partition dueled nothing, prompt files over 200
turns refused, and the bucket thresholds of every partition in report.md and the dataset card."""
import json
import re
from pathlib import Path

import pytest

from duel_assets.lib.sampling.prompt_files import PromptFileError, load_prompt_file
from duel_assets.lib.sampling.prompt_store import sample_prompt_file
from duel_assets.lib.settings import ChainConfig
from duel_assets_tests.conftest import TEST_CHAIN, materialize, materialize_report
from duel_assets_tests.e2e.test_command_line import cli, cli_env

NOT_MATCHING = {"instance_id": "nobody__nowhere-1", "repo": "nobody/nowhere", "problem_statement": "Nothing here.",
                "patch": "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a\n+b\n"}


def unmatched_records(tmp: Path) -> str:
    """A `[pr_records]` table whose only record matches no instance of the bundled samples."""
    f = tmp / "other_prs.jsonl"
    f.write_text(json.dumps(NOT_MATCHING) + "\n")
    return f'\n[pr_records]\npath = "{f}"\nformat = "auto"\n'


def test_a_prompt_file_over_200_turns_is_refused_whole(tmp_path):
    t = sample_prompt_file(tmp_path, tmp_path / "prompt" / "k.json", "k", ChainConfig())["turns"][0]
    f = tmp_path / "big.json"
    f.write_text(json.dumps([{**t, "turn_id": f"t{i}"} for i in range(201)]))
    with pytest.raises(PromptFileError, match=r"lists 201 turns; a prompt file \(one partition\) holds at most 200: split it"):
        load_prompt_file(f)
    f.write_text(json.dumps([{**t, "turn_id": f"t{i}"} for i in range(200)]))
    assert load_prompt_file(f).skipped == {"duplicate_history": 199}  # 200 listed: read (one history, 200 ids)


def test_run_says_on_the_terminal_that_a_prompt_file_over_200_turns_is_refused(tmp_path):
    env = cli_env(tmp_path)  # no call is made: the partition fails at its first step
    t = sample_prompt_file(tmp_path, tmp_path / "scratch" / "k.json", "k", ChainConfig())["turns"][0]
    prompt = Path(env["DUEL_HOME"]) / "prompt"
    prompt.mkdir(parents=True)
    (prompt / "big.json").write_text(json.dumps([{**t, "turn_id": f"t{i}"} for i in range(1000)]))
    out = cli(env, "run", "--partition", "big", "--parallel", "1")
    assert out.returncode == 1
    assert re.search(r"^\[big\] sampled_turns failed: prompt file \S+big.json lists 1000 turns; .* holds at most 200: "
                     r"split it", out.stderr, re.M), out.stderr[-2000:]


def test_run_says_what_each_partition_delivered_and_fails_when_one_dueled_nothing(tmp_path, fresh_standin):
    env = cli_env(tmp_path, base_url=fresh_standin.base_url)
    assert cli(env, "sample", "--prompts", "6").returncode == 0  # prompts_6_000
    ok = cli(env, "run", "--parallel", "1")
    assert ok.returncode == 0, ok.stderr[-3000:]
    line = next(ln for ln in ok.stdout.splitlines() if ln.startswith("[prompts_6_000] "))
    assert re.match(r"\[prompts_6_000\] 6 turns: 6 dueled \(\d parsed\), 0 excluded; accepted \d+ \(final \d+, refined \d+\), "
                    r"defeat \d+, parse-fail \d+ \(final >= 80, refined >= 66\); gate (ACCEPT|REJECT)", line), line
    assert re.search(r"^all partitions: gate (ACCEPT|REJECT)", ok.stdout, re.M) and "\nexport: " in ok.stdout
    assert ok.stdout.count("report: ") == 1
    frames = re.findall(r"duel prompts_6_000: .*?(\d+)/(\d+) \[", ok.stderr)  # the call layer's bar, frame by frame
    assert frames and frames[-1][0] == frames[-1][1], frames[-3:]  # it ends at its total
    # every turn of a new partition excluded: the PR records match none of its instances
    (tmp_path / "chain.toml").write_text(TEST_CHAIN + unmatched_records(tmp_path))
    lost = cli(env, "run", "--partition", "lost", "--sample-new", "--parallel", "1")
    assert lost.returncode == 3, lost.stderr[-3000:]
    assert re.search(r"^error: \[lost\] dueled no turn: all (\d+) turns were excluded \(no_hidden_info \1\); no hidden PR "
                     r"record matched its instances: check \[\[pr_records\]\]", lost.stderr, re.M), lost.stderr[-2000:]
    assert re.search(r"^\[lost\] (\d+) turns: 0 dueled \(0 parsed\), \1 excluded \(no_hidden_info \1\);.* gate REJECT",
                     lost.stdout, re.M), lost.stdout
    # both partitions in worker processes (the records now match neither), without an API key: a line
    # for each, one warning, exit 3
    del env["LLM_API_KEY"]
    both = cli(env, "run", "--parallel", "2")
    assert both.returncode == 3, both.stderr[-3000:]
    assert sorted(ln.split("]")[0] for ln in both.stdout.splitlines() if ln.startswith("[")) == ["[lost", "[prompts_6_000"]
    assert both.stderr.count("warning: LLM_BASE_URL is set and no API key is") == 1 and "Set LLM_API_KEY." in both.stderr
    assert "error: [lost] dueled no turn" in both.stderr and "error: [prompts_6_000] dueled no turn" in both.stderr
    assert "failed partitions" not in both.stderr and "materialized 2/2 partitions" in both.stdout


def test_a_partition_that_dueled_nothing_fails_its_asset_check(duel_env, instance):
    duel_env["config"].write_text(TEST_CHAIN + unmatched_records(duel_env["tmp"]))
    res = materialize(instance, "lost")
    assert res.success  # every step did its work
    check, = [c for c in res.get_asset_check_evaluations() if c.check_name == "dueled_turns"]
    assert not check.passed and check.severity.value == "ERROR"
    assert "dueled no turn: all 6 turns were excluded (no_hidden_info 6)" in check.description
    assert check.metadata["dueled"].value == 0 and check.metadata["excluded_by_reason"].value == {"no_hidden_info": 6}


def test_report_and_card_state_each_partitions_thresholds_and_flag_a_mix(duel_env, instance):
    cfg = duel_env["config"]
    cfg.write_text(TEST_CHAIN + "\n[export]\nrequire_gate = false\n")
    assert materialize(instance, "before").success
    report = materialize_report(instance)
    assert report.success
    text = (duel_env["home"] / "report" / "report.md").read_text()
    assert "Buckets: final >= 80, refined >= 66, leak suspects: demote (every partition)." in text
    assert "different thresholds" not in text
    # buckets.final changed, one partition materialized again under it: the export now mixes two settings
    cfg.write_text(TEST_CHAIN + "\n[export]\nrequire_gate = false\n\n[buckets]\nfinal = 50\nrefined = 40\n")
    assert materialize(instance, "after").success
    assert materialize_report(instance).success
    text = (duel_env["home"] / "report" / "report.md").read_text()
    card = (duel_env["home"] / "export" / "README.md").read_text()
    for doc in (text, card):
        assert "**The partitions were bucketed with different thresholds**" in doc
        assert "- final >= 50, refined >= 40, leak suspects: demote: after" in doc
        assert "- final >= 80, refined >= 66, leak suspects: demote: before" in doc
        assert "partitions bucketed otherwise (before) keep their buckets" in doc
        assert re.search(r"^\| before \| \w+ \|.*\| 80 / 66 \|", doc, re.M) and re.search(r"^\| after \| \w+ \|.*\| 50 / 40 \|", doc, re.M)
    # materialized again under the configuration: one setting again
    assert materialize(instance, "before").success and materialize_report(instance).success
    text = (duel_env["home"] / "report" / "report.md").read_text()
    assert "Buckets: final >= 50, refined >= 40, leak suspects: demote (every partition)." in text
    assert "different thresholds" not in text and "configuration now says" not in text
