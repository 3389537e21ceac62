"""Verdicts from stored rows: excluded turns and who answered."""
import pandas as pd

from duel_assets.lib import tables
from duel_assets.lib.export.card import render_card
from duel_assets.lib.export.documents import export_records
from duel_assets.lib.export.report import render_report
from duel_assets.lib.settings import METRICS, ChainConfig, GateConfig
from duel_assets.lib.verdict.metadata import verdict_metadata
from duel_assets.lib.verdict.replies import CHALLENGER_FIRST, KING_FIRST
from duel_assets.lib.verdict.verdicts import partition_gate, provenance, verdict_rows

TURNS = [f"t{i}" for i in range(6)]
CFG = ChainConfig()
CFG.gate = GateConfig(resamples=200)


def answers(role: str, excluded: dict[str, str] | None = None, standin: bool = False, served: str | None = None) -> pd.DataFrame:
    rows = [{"turn_id": t, "role": role, "model": "gen", "content": "ok", "format_ok": True, "leak_suspect": False,
             "excluded_reason": (excluded or {}).get(t), "standin": standin, "served_model": served} for t in TURNS]
    return tables.frame("challenger_answers" if role == "challenger" else "king_answers", rows, "k")


def judgements(challenger: int, opponent: int, turns=TURNS, standin: bool = False, served: str | None = None) -> pd.DataFrame:
    rows = [{"turn_id": t, "judge": "j", "order": o, "opponent": "king", "parsed": True, "standin": standin,
             "served_model": served, **{f"{m}_challenger": challenger for m in METRICS},
             **{f"{m}_opponent": opponent for m in METRICS}} for t in turns for o in (KING_FIRST, CHALLENGER_FIRST)]
    return tables.frame("judge_scores", rows, "k")


def test_a_turn_with_an_excluded_answer_is_excluded_not_parse_fail():
    king = answers("king", {"t0": "king_malformed", "t1": "excluded_instance"})
    chal = answers("challenger", {"t2": "no_hidden_info", "t1": "excluded_instance"})
    # the judges even scored the excluded turns: their scores must not count
    rows = verdict_rows(judgements(9, 1), chal, TURNS, CFG, king)
    by = {r["turn_id"]: r for r in rows}
    assert [by[t]["excluded_reason"] for t in TURNS] == ["king_malformed", "excluded_instance", "no_hidden_info", None, None, None]
    for t in ("t0", "t1", "t2"):
        assert by[t]["score"] is None and by[t]["bucket"] is None and by[t]["parsed"] is None
        assert by[t]["unparsed_reason"] is None
    assert all(by[t]["bucket"] == "final" for t in ("t3", "t4", "t5"))
    g = partition_gate(rows, CFG.gate)
    assert (g.turns, g.parsed_turns, g.parsed_fraction) == (3, 3, 1.0)
    assert g.excluded == {"king_malformed": 1, "excluded_instance": 1, "no_hidden_info": 1}
    md = verdict_metadata(rows, judgements(9, 1), g, provenance(king, chal, judgements(9, 1)))
    assert {r["reason"]: r["turns"] for r in md["excluded_by_reason"].rows} == g.excluded
    assert md["buckets"].rows == ({"bucket": "final", "turns": 3, "share": 1.0},)  # no parse-fail row
    assert (md["dueled"], md["parsed"], md["parse_rate"], md["accepted_share"]) == (3, 3, 1.0, 1.0)
    # the verdict table round-trips through the codec, and the export skips excluded turns
    verdict_df = tables.frame("duel_verdict", rows, "k")
    turns = tables.frame("sampled_turns", [{"turn_id": t, "history": [{"role": "user", "content": "x"}], "reference": {}}
                                           for t in TURNS], "k")
    recs = export_records(turns, king, chal, judgements(9, 1), verdict_df, "k")
    assert [r["turn_id"] for r in recs] == ["t3", "t4", "t5"]
    assert recs[0]["document"]["turn"]["history"] == [{"role": "user", "content": "x"}]


def test_unparsed_turns_still_count_as_parse_fail_beside_excluded_ones():
    rows = verdict_rows(judgements(9, 1, turns=["t3", "t4"]), answers("challenger", {"t0": "no_hidden_info"}), TURNS, CFG,
                        answers("king"))
    g = partition_gate(rows, CFG.gate)
    assert (g.turns, g.parsed_turns) == (5, 2) and g.excluded == {"no_hidden_info": 1}
    assert sum(r["unparsed_reason"] == "no judge replied" for r in rows) == 3


def test_a_stand_in_run_says_so_in_metadata_report_and_card():
    king, chal = answers("king", standin=True, served="standin-generator"), answers("challenger", standin=True, served="standin-generator")
    judges = judgements(9, 1, standin=True, served="standin-judge-1")
    prov = provenance(king, chal, judges)
    assert prov["standin"] and (prov["standin_answers"], prov["answers"]) == (12, 12)
    assert prov["served_models"]["judge"] == {"standin-judge-1": 12}
    rows = verdict_rows(judges, chal, TURNS, CFG, king)
    g = partition_gate(rows, CFG.gate)
    md = verdict_metadata(rows, judges, g, prov)
    assert md["standin"] is True and "offline stand-in answered, not a model" in md["standin_note"]
    summaries = {"k": {"gate": g.to_dict(), "scores": [r["score"] for r in rows], "buckets": {}, "provenance": prov}}
    report = render_report(summaries, g, 2)
    header = report.split("## Gate")[0]
    assert "The offline stand-in answered, not a model: 12 of 12 answers and 12 of 12 judgements" in header
    assert "challenger: standin-generator (6) (served)" in header and "judge: standin-judge-1 (12) (served)" in header
    card = render_card(summaries, {}, g, [], {"k": "not exported yet"}, CFG, prov)
    assert "The offline stand-in answered, not a model" in card and "not for training" in card


def test_a_real_model_run_names_its_served_models_and_no_stand_in():
    king, chal = answers("king", served="gpt-4o-mini-2024-07-18"), answers("challenger", served="gpt-4o-mini-2024-07-18")
    judges = judgements(9, 1)
    prov = provenance(king, chal, judges)
    assert not prov["standin"]
    g = partition_gate(verdict_rows(judges, chal, TURNS, CFG, king), CFG.gate)
    report = render_report({"k": {"gate": g.to_dict(), "scores": [], "provenance": prov}}, g, 2)
    assert "stand-in" not in report
    assert "king: gpt-4o-mini-2024-07-18 (6) (served)" in report
    assert "judge: j (12) (configured; the endpoint did not name the serving model)" in report
