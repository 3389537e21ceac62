"""Judging through the assets: panel, position bias, parse failures, mode 1, checks, metadata."""

from duel_assets_tests.conftest import materialize, metadata, query, table_rows


def set_judges(cfg_path, judges):
    text = cfg_path.read_text().replace('models = ["standin-judge-1"]', "models = " + repr(judges).replace("'", '"'))
    cfg_path.write_text(text)


def test_position_biased_judge_cannot_move_scores(duel_env, instance):
    set_judges(duel_env["config"], ["standin-judge-biased-a"])
    res = materialize(instance, "p")
    scores = query(duel_env["home"], "SELECT DISTINCT score FROM duel.duel_verdict")
    assert scores == [(50.0,)]
    md = metadata(res, "duel_verdict")
    assert md["gate"].startswith("REJECT: mean margin 0.0 < minimum")  # the verdict and why, one line
    (stats,) = table_rows(md["per_judge"])
    assert stats["judge"] == "standin-judge-biased-a" and stats["parse_rate"] == 1.0
    assert stats["position_consistency"] == 0.0  # every pair flips with the order


def test_unparseable_judge_retries_once_then_counts_as_failure(duel_env, instance):
    set_judges(duel_env["config"], ["standin-judge-1", "standin-judge-garbage"])
    cfg = duel_env["config"]  # every judge asked, even where the first one already fixed the bucket
    # free text (structured output would make the garbage judge answer the schema's JSON)
    cfg.write_text(cfg.read_text().replace("[judges]", "[judges]\nskip_decided = false\nstructured = false"))
    res = materialize(instance, "p")
    home = duel_env["home"]
    rows = dict(query(home, "SELECT judge, count(*) FILTER (WHERE parsed) FROM duel.judge_scores GROUP BY 1"))
    assert rows == {"standin-judge-1": 12, "standin-judge-garbage": 0}
    retried, = query(home, "SELECT count(*) FROM duel.judge_scores WHERE judge='standin-judge-garbage' AND retried AND parse_error IS NOT NULL")
    assert retried[0] == 12
    # 1 of 2 judges parsed: turns count as parsed, scored by the parsing judge alone
    verdict = query(home, "SELECT parsed, judges_parsed, judges_total, per_judge FROM duel.duel_verdict")
    assert all(p and jp == 1 and jt == 2 and "garbage" not in pj for p, jp, jt, pj in verdict)
    md = metadata(res, "judge_scores")
    assert md["parse_rate"] == 0.5 and md["retried"] == 12
    assert md["parse_rate_by_judge_and_format"] == {"standin-judge-1": {"text": {"judged": 12, "parsed": 12, "rate": 1.0}},
                                                    "standin-judge-garbage": {"text": {"judged": 12, "parsed": 0, "rate": 0.0}}}
    checks = {c.check_name: c for c in res.get_asset_check_evaluations()}
    assert not checks["parse_rate"].passed and checks["format_ok_rate"].passed


def test_mode_1_duels_against_the_reference_turn(duel_env, instance, monkeypatch):
    monkeypatch.setenv("DUEL_MODE", "1")
    n_before = len(duel_env["standin"].state.log)
    materialize(instance, "p")
    home = duel_env["home"]
    kings = query(home, "SELECT DISTINCT error FROM duel.king_answers")
    assert kings == [("duel_mode_1_uses_reference",)]
    assert query(home, "SELECT DISTINCT opponent FROM duel.judge_scores") == [("reference",)]
    assert query(home, "SELECT count(*) FROM duel.duel_verdict WHERE parsed") == [(6,)]
    models = {e["model"] for e in duel_env["standin"].state.log[n_before:]}
    assert models == {"standin-generator", "standin-judge-1"}
    n_gen = sum(1 for e in duel_env["standin"].state.log[n_before:] if e["model"] == "standin-generator")
    assert n_gen == 6  # challenger only: the king made no calls


def test_king_and_challenger_never_see_each_other_and_only_the_challenger_sees_the_pr(duel_env, instance):
    from duel_assets.lib.duel import messages
    from duel_assets.lib.sampling.pr_records import read_pr_records
    from duel_assets.lib.sampling.prompt_files import load_prompt_file

    materialize(instance, "p", selection=["sampled_turns", "pr_records"])
    turn = load_prompt_file(duel_env["home"] / "prompt" / "p.json").turns[0]
    pr = read_pr_records(None, [turn.instance_id]).iloc[0].to_dict()
    king_msgs, chal_msgs = messages.king_messages(turn), messages.challenger_messages(turn, pr)
    king = "\n".join(m["content"] for m in king_msgs)
    chal = "\n".join(m["content"] for m in chal_msgs)
    assert pr["patch"].splitlines()[0] in chal and "<pr_record>" in chal
    assert pr["patch"].splitlines()[0] not in king and "pr_record" not in king
    judge_msgs = messages.judge_messages(turn, pr, "ANSWER-ONE", "ANSWER-TWO")
    judge = "\n".join(m["content"] for m in judge_msgs)
    assert "<pr_record>" in judge and pr["patch"].splitlines()[0] in judge
    # what is shared comes first, in identical bytes: history for all three, then the PR record
    n = len(turn.history)
    assert king_msgs[:n] == chal_msgs[:n] == judge_msgs[:n]
    assert chal_msgs[n] == judge_msgs[n] and "<pr_record>" in chal_msgs[n]["content"]


def test_leak_suspects_never_reach_final(duel_env, instance):
    materialize(instance, "prompts_24_000")
    materialize(instance, "prompts_24_001")
    home = duel_env["home"]
    leaks = query(home, "SELECT v.bucket, c.leak_evidence FROM duel.duel_verdict v JOIN duel.challenger_answers c USING (prompt_file, turn_id) WHERE c.leak_suspect")
    assert all(b != "final" for b, _ in leaks)
    assert query(home, "SELECT count(*) FROM duel.duel_verdict WHERE leak_suspect AND bucket = 'final'") == [(0,)]
