"""A partition whose turns share histories pays each distinct request once, also under faults
(counted at the endpoint: the stand-in counts answers to a body it had already answered)."""
import json
from pathlib import Path

import pytest

from duel_assets_tests.conftest import materialize, metadata


def _bundled_turns() -> list[dict]:
    """Every turn of the bundled rows, turns that share their visible history included (different
    rollouts of one instance share their first steps)."""
    from duel_assets.lib.sampling.cutter import cut_turns
    from duel_assets.lib.sampling.readers import reader_for
    from duel_assets.lib.sampling.sources import BUNDLED_SOURCES, iter_rows

    read = reader_for("swe_zero")
    return [t.to_record() for _, row in iter_rows(BUNDLED_SOURCES[0]) for t in cut_turns(read(row))[0]]


def _write_prompt_file(home: Path, key: str, turns: list[dict]) -> None:
    d = home / "prompt"
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{key}.json").write_text(json.dumps({"turns": turns}))


def _shared_histories(turns: list[dict]) -> int:
    """Turns whose visible history another turn of the list also has (identical requests)."""
    from collections import Counter

    c = Counter(json.dumps(t["history"], sort_keys=True) for t in turns)
    return sum(n for n in c.values() if n > 1)


def _set(cfg: Path, **values) -> None:
    text = cfg.read_text()
    for k, v in values.items():
        old = next(line for line in text.splitlines() if line.startswith(f"{k} ="))
        text = text.replace(old, f"{k} = {v}")
    cfg.write_text(text)


@pytest.mark.parametrize("concurrency,fault_rate", [(1, 0.0), (8, 0.2)])
def test_a_partition_of_turns_that_share_histories_pays_each_body_once(duel_env, instance, concurrency, fault_rate):
    turns = _bundled_turns()
    assert len(turns) >= 80 and _shared_histories(turns) >= 40
    home, srv = duel_env["home"], duel_env["standin"]
    _set(duel_env["config"], concurrency=concurrency, timeout_s=1, retry_budget=8)
    srv.state.fault_rate = fault_rate
    srv.state.timeout_sleep_s = 1.5
    _write_prompt_file(home, "shared", turns)
    res = materialize(instance, "shared")
    assert res.success
    md = metadata(res, "sampled_turns")  # a turn whose history another turn has is kept once
    distinct = len({json.dumps(t["history"], sort_keys=True) for t in turns})
    assert md["turns"] == distinct and md["duplicate_history"] == len(turns) - distinct
    stats = srv.state.stats()
    assert stats["answers"] > 0 and stats["repeats"] == 0, stats
    assert stats["answers"] == stats["distinct_bodies_answered"]
    if fault_rate:
        assert sum(stats["faults"].values()) > 0  # the faults happened and were absorbed
    # a re-run sends nothing at all
    n = stats["requests"]
    assert materialize(instance, "shared").success
    assert srv.state.stats()["requests"] == n
