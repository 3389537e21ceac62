"""chain.toml: typed, strict, ranged; one line per problem naming the key; train_data's names."""
import re

import pytest
import tomllib

from duel_assets.lib.settings import ChainConfig, ConfigError, load_config, parse_config
from duel_assets.lib.settings.show import config_rows, summary_rows
from duel_assets_tests.conftest import REPO

ROOT = REPO

# (a mistake seen in real configurations, the TOML, the key path the error must name)
BAD = [
    ("panel as a string", '[judges]\nmodels = "gpt-4o-mini"\n', "judges.models"),
    ("confidence as a percentage", "[gate]\nconfidence = 95\n", "gate.confidence"),
    ("misspelled key in a source", '[[sources]]\nformat = "swe_zero"\npath = "a/b"\nwieght = 1.0\n', "sources[0].wieght"),
    ("extra key in a source", '[[sources]]\nformat = "swe_zero"\npath = "a/b"\nconfig = "trajectories"\n',
     "sources[0].config"),
    ("typo in a key", "[generation]\ntemperture = 0.5\n", "generation.temperture"),
    ("excluded repos as a string", '[filters]\nexcluded_repos = "acme/widgets-fork"\n', "filters.excluded_repos"),
    ("unknown export bucket", '[export]\nbuckets = ["finals"]\n', "export.buckets[0]"),
    ("negative bucket threshold", "[buckets]\nfinal = -10\n", "buckets.final"),
    ("metric weights summing to 0", "[metric_weights]\n" + "".join(
        f"{m} = 0\n" for m in ("correctness", "grounding", "progress", "protocol", "efficiency")), "metric_weights"),
    ("no bootstrap resamples", "[gate]\nresamples = 0\n", "gate.resamples"),
    ("token limits as a string", '[judges]\ntoken_limits = "2048"\n', "judges.token_limits"),
    ("prices as a number", "prices = 5\n", "prices"),
    ("a top-level key after a table", '[leakage]\naction = "demote"\nexcluded_instance_ids = []\n',
     "leakage.excluded_instance_ids"),
    ("both spellings of the panel", '[judge]\nmodels = ["a"]\n[judges]\nmodels = ["b"]\n', "judge"),
    ("refined above final", "[buckets]\nfinal = 60\nrefined = 70\n", "buckets.refined"),
    ("a boolean given as a number", "[judges]\nposition_swap = 1\n", "judges.position_swap"),
    ("turns per file over 200", "[sampling]\nturns_per_file = 500\n", "sampling.turns_per_file"),
    ("a token limit for no judge", '[judges]\nmodels = ["a"]\ntoken_limits = { "b" = 10 }\n', 'judges.token_limits.b'),
    ("not a SQL predicate", '[filters]\nwhere = "reward >"\n', "filters.where"),
    ("two statements as a predicate", '[filters]\nwhere = "1=1; DROP TABLE x"\n', "filters.where"),
    ("an unknown table", "[sampler]\nprompts = 3\n", "sampler"),
    ("nan", "[gate]\nmin_margin = nan\n", "gate.min_margin"),
    # upper bounds: each of these was once accepted
    ("a concurrency of 1e8", "[calls]\nconcurrency = 100000000\n", "calls.concurrency"),
    ("a million resamples", "[generation]\nmax_resamples = 1000000\n", "generation.max_resamples"),
    ("a retry budget of 1e5", "[calls]\nretry_budget = 100000\n", "calls.retry_budget"),
    ("a backoff of 1e12 s", "[calls]\nbackoff_base_s = 1e12\n", "calls.backoff_base_s"),
    ("max_tokens of 1e11", "[generation]\nmax_tokens = 100000000000\n", "generation.max_tokens"),
    ("a judge's max_tokens of 1e11", "[judges]\nmax_tokens = 100000000000\n", "judges.max_tokens"),
    ("a timeout of a day", "[calls]\ntimeout_s = 86400.0\n", "calls.timeout_s"),
]


@pytest.mark.parametrize("what,toml,path", BAD, ids=[b[0] for b in BAD])
def test_each_bad_value_is_refused_naming_its_key(what, toml, path):
    with pytest.raises(ConfigError) as e:
        parse_config(tomllib.loads(toml))
    lines = e.value.errors
    assert any(line.startswith(f"{path}:") for line in lines), lines
    assert all("allowed" in line or "unknown key" in line for line in lines), lines


def test_every_problem_is_reported_at_once_one_line_each(tmp_path):
    p = tmp_path / "chain.toml"
    p.write_text('[judges]\nmodels = "x"\n[gate]\nconfidence = 95\nresamples = 0\n[generation]\ntemperture = 1\n')
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert len(e.value.errors) == 4
    assert all(line.startswith(str(p)) and "\n" not in line for line in e.value.errors)
    by_key = {line.split(": ")[1]: line for line in e.value.errors}
    assert 'got "x"' in by_key["judges.models"] and 'write ["x"]' in by_key["judges.models"]
    assert "got 95" in by_key["gate.confidence"] and "> 0 and < 1" in by_key["gate.confidence"]
    assert 'did you mean "temperature"' in by_key["generation.temperture"]


def test_invalid_toml_is_one_line_with_the_position(tmp_path):
    p = tmp_path / "chain.toml"
    p.write_text("[gate\nmin_margin = 1\n")
    with pytest.raises(ConfigError, match=r"not valid TOML: .*line 1") as e:
        load_config(p)
    assert len(e.value.errors) == 1


def test_strict_types_never_coerce():
    cfg = parse_config({"gate": {"min_margin": 3}, "calls": {"requests_per_minute": 60}})
    assert cfg.gate.min_margin == 3.0 and isinstance(cfg.gate.min_margin, float)  # an integer is a number
    for bad in ({"sampling": {"seed": "7"}}, {"sampling": {"prompts": 2.5}}, {"judges": {"position_swap": "true"}},
                {"judges": {"token_limits": {"gpt-4o-mini": True}}}, {"sources": {"format": "swe_zero"}}):
        with pytest.raises(ConfigError):
            parse_config(bad)


def test_shipped_examples_load():
    demo = load_config(ROOT / "duel_assets" / "data" / "demo_chain.toml")
    assert demo.judges.models == ["standin-judge-1", "standin-judge-2"]
    td = load_config(ROOT / "examples" / "train_data.chain.toml")
    assert td.generation.model == "moonshotai/Kimi-K2.6-TEE"
    assert len(td.judges.models) == 3
    for family in ("DeepSeek", "Qwen3", "Thinking", "Kimi"):
        assert any(family in m for m in td.judges.models), family
    assert td.sampling.prompts == 2000
    assert [s.path for s in td.sources] == ["AlienKevin/SWE-ZERO-12M-trajectories"]
    assert td.pr_records.path == "nebius/SWE-rebench-V2-PRs"
    assert td.spelling == {"judges": "judge", "gate": "duel"}


def test_train_data_names_map_onto_judges_and_gate():
    cfg = parse_config({"judge": {"models": ["j1", "j2"], "token_limits": {"j2": 4096}},
                        "duel": {"min_margin": 2.5, "confidence": 0.9}})
    assert cfg.judges.models == ["j1", "j2"] and cfg.judges.token_limits == {"j2": 4096}
    assert cfg.gate.min_margin == 2.5 and cfg.gate.confidence == 0.9
    with pytest.raises(ConfigError, match=r"^duel\.resamples: got 0"):
        parse_config({"duel": {"resamples": 0}})  # errors name the table as written
    with pytest.raises(ConfigError, match=r"duel: given together with \[gate\]"):
        parse_config({"duel": {}, "gate": {}})
    origins = {r.key: r.origin for r in config_rows(parse_config({"judge": {"models": ["j"]}}, "/x/chain.toml"))}
    assert origins["judges.models"].endswith("[judge]") and origins["gate.confidence"] == "default"


def test_pr_records_as_a_table_or_an_array_of_tables():
    one = parse_config({"pr_records": {"path": "prs.parquet"}})
    assert one.pr_records.path == "prs.parquet" and len(one.pr_records.specs) == 1
    assert parse_config({"pr_records": {"path": ""}}).pr_records.specs == []  # empty: the bundled records
    many = parse_config({"pr_records": [{"path": "a.parquet", "format": "swe_smith"}, {"path": "b/c"}]})
    assert [(s.path, s.format) for s in many.pr_records.specs] == [("a.parquet", "swe_smith"), ("b/c", "auto")]
    with pytest.raises(ConfigError, match=r"(?m)^pr_records\[1\]\.pth: unknown key"):
        parse_config({"pr_records": [{"path": "a"}, {"pth": "b"}]})
    with pytest.raises(ConfigError, match=r"^pr_records\.fromat: unknown key"):
        parse_config({"pr_records": {"path": "a", "fromat": "x"}})


def test_new_keys_and_their_defaults():
    c = ChainConfig()
    assert (c.calls.stream, c.calls.adaptive, c.judges.skip_decided, c.generation.max_resamples) == (True, True, True, 2)
    assert (c.export.layout, c.export.reasoning, c.filters.where) == ("openai", "keep", "")
    assert c.sampling.max_prompt_file_bytes == 64 * 1024 * 1024
    assert (c.hidden_info.when_missing, c.warehouse.lock_timeout_s, c.calibration.target_precision) == ("exclude", 600.0, 0.9)
    given = parse_config({"export": {"layout": "openai", "reasoning": "keep"}, "hidden_info": {"when_missing": "duel"},
                          "filters": {"where": "reward >= 1 AND repo NOT LIKE 'acme/%'"},
                          "prices": {"m": {"prompt": 1, "completion": 2, "cached_prompt": 0.1}},
                          "sources": [{"format": "swe_agent", "path": "a/b"}]})
    assert given.prices == {"m": {"prompt": 1.0, "completion": 2.0, "cached_prompt": 0.1}}
    assert given.prices["m"].get("prompt") == 1.0  # plain tables: the cost estimate reads them with .get
    for bad in ({"export": {"layout": "chatml"}}, {"hidden_info": {"when_missing": "skip"}},
                {"warehouse": {"lock_timeout_s": 0}}, {"calibration": {"target_precision": 1.0}},
                {"generation": {"max_resamples": -1}}, {"sampling": {"max_prompt_file_bytes": 0}}):
        with pytest.raises(ConfigError):
            parse_config(bad)


def test_metric_weights_fill_in_and_max_history_tokens_sets_chars():
    cfg = parse_config({"metric_weights": {"correctness": 2.0}, "filters": {"max_history_tokens": 1000}})
    assert cfg.metric_weights == {"correctness": 2.0, "grounding": 1.0, "progress": 1.0, "protocol": 1.0, "efficiency": 1.0}
    assert cfg.sampling.max_history_chars == 4000


def test_summary_names_generation_judges_and_sources():
    cfg = parse_config({"generation": {"model": "g"}, "judges": {"models": ["a", "b"]},
                        "sources": [{"format": "sera", "path": "x/y", "weight": 2.0}]}, "/cfg/chain.toml")
    rows = {r.key: r for r in summary_rows(cfg)}
    assert rows["generation"].value == "g" and rows["judges"].value == "a, b"
    assert rows["sources[0]"].value == "sera x/y (split train, weight 2)"
    assert rows["pr_records"].value == "bundled sample records" and rows["pr_records"].origin == "default"


def test_review_url_is_an_address_without_credentials():
    assert ChainConfig().review.url is None
    assert parse_config({"review": {"url": "http://127.0.0.1:8800/"}}).review.url == "http://127.0.0.1:8800"
    assert parse_config({"review": {"url": "https://review.example.org/duels"}}).review.url == "https://review.example.org/duels"
    for bad in ("ftp://x", "127.0.0.1:8800", "http://", "http://x:99999", "http://x/?a=1", "http://x/#f", "http://a b"):
        with pytest.raises(ConfigError, match=r"^review\.url: got .*; allowed: an http:// or https:// address"):
            parse_config({"review": {"url": bad}})
    with pytest.raises(ConfigError) as e:  # refused, and the password is not repeated in the error line
        parse_config({"review": {"url": "http://reviewer:hunter2@x:8800"}})
    assert "hunter2" not in str(e.value) and "reviewer" not in str(e.value) and "***@x:8800" in str(e.value)


def test_the_configuration_hash_follows_the_settings_not_their_spelling(tmp_path):
    from duel_assets.lib.settings.origin import config_hash, config_metadata

    a, b, c = tmp_path / "a.toml", tmp_path / "b.toml", tmp_path / "c.toml"
    a.write_text('[judge]\nmodels = ["j1", "j2"]\n\n[gate]\nmin_margin = 2.0\nresamples = 500\n')
    b.write_text('# the same settings, written otherwise\n[gate]\nresamples = 500\nmin_margin = 2\n\n[judges]\nmodels = ["j1", "j2"]\n')
    c.write_text('[judges]\nmodels = ["j1", "j2"]\n\n[gate]\nmin_margin = 2.5\nresamples = 500\n')
    ca, cb, cc = load_config(a), load_config(b), load_config(c)
    assert config_hash(ca, 2) == config_hash(cb, 2) != config_hash(cc, 2)
    assert config_hash(ca, 1) != config_hash(ca, 2)  # DUEL_MODE is part of the configuration
    assert re.fullmatch(r"[0-9a-f]{16}", config_hash(ca, 2))
    md = config_metadata(ca, 1, {"DUEL_MODE": "1", "DUEL_CONFIG": str(a), "LLM_API_KEY": "sk-never-shown"})
    assert md == {"config_hash": config_hash(ca, 1), "config_file": str(a.resolve()),
                  "config_env": f"DUEL_CONFIG={a} DUEL_MODE=1"}
    assert config_metadata(ChainConfig(), 2, {}) == {"config_hash": config_hash(ChainConfig(), 2),
                                                     "config_file": "built-in defaults", "config_env": "none"}


def test_a_file_is_parsed_once_for_the_same_bytes_and_again_when_it_changes(tmp_path, monkeypatch):
    from duel_assets.lib.settings import load

    parsed = []
    real = load.parse_config
    monkeypatch.setattr(load, "parse_config", lambda data, origin="<dict>": parsed.append(origin) or real(data, origin))
    f = tmp_path / "chain.toml"
    f.write_text("[gate]\nresamples = 700\n")
    first, again = load_config(f), load_config(f)
    assert len(parsed) == 1 and first.gate.resamples == again.gate.resamples == 700
    first.gate.resamples = 1  # each call has a configuration of its own
    assert load_config(f).gate.resamples == 700 and load_config(f).origin == str(f.resolve())
    f.write_text("[gate]\nresamples = 800\n")
    assert load_config(f).gate.resamples == 800 and len(parsed) == 2
