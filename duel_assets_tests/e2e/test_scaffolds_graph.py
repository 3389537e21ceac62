"""SWE-agent and SWE-smith rows through the whole graph."""

from duel_assets_tests.conftest import FIXTURES as FIX


def test_swe_agent_and_swe_smith_rows_through_the_graph(duel_env, instance):
    from duel_assets_tests.conftest import materialize, metadata, query

    cfg = duel_env["config"]
    cfg.write_text(cfg.read_text().replace("turns_per_file = 6", "turns_per_file = 12") + f"""
[[sources]]
format = "swe_agent"
path = "{FIX / 'swe_agent'}"

[[sources]]
format = "swe_agent"
path = "{FIX / 'swe_smith_xml.jsonl'}"

[[pr_records]]
path = "{FIX / 'swe_smith_instances.jsonl'}"
format = "swe_smith"
""")
    home = duel_env["home"]
    res = materialize(instance, "swe_agent_batch")
    assert res.success
    turns = dict(query(home, "SELECT protocol, count(*) FROM duel.sampled_turns GROUP BY 1"))
    # 6 of the folder's 7 turns (3 text style, 4 function calling: which one stays out depends on the
    # path-seeded order) and all 6 XML-style turns
    assert sum(turns.values()) == 12 and turns["bash_block"] in (2, 3)
    src = dict(query(home, "SELECT instance_id, record_source FROM duel.pr_records"))
    assert src["acme__widgets.1a2b3c4d.pr_42"] == "row" and src["acme__widgets-42"] is None
    assert metadata(res, "pr_records")["turns_by_record_source"] == {"row": 6}
    for t in ("king_answers", "challenger_answers"):  # the 6 turns with hidden information are dueled
        assert query(home, f"SELECT count(*) FROM duel.{t} WHERE error IS NULL") == [(6,)]
        assert query(home, f"SELECT excluded_reason, count(*) FROM duel.{t} WHERE error IS NOT NULL GROUP BY 1") == [("no_hidden_info", 6)]
