"""The calls a run of some partitions would make, and what they would cost, before any is made.
Nothing is sent and nothing is written.

A partition's turns come from its prompt file (histories another prompt file holds, or an earlier
partition of the same estimate, are left out as the run leaves them out), its hidden records from
the configured sources (or the partition's cache of them). King and challenger requests are exactly
those the run sends. A turn whose two answers are in the call store gets exactly its judge requests
(none when the answers take the same action); otherwise the judges are asked about answers of the
expected completion length. Judges the decided-bucket rule is expected to skip are counted at the
share of their judgements it skipped in the warehouse so far (none before any). Prices, prefix cache
and completion lengths: :mod:`..calls.estimate`.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..calls.estimate import Estimate, Observed
from ..calls.types import CallRequest, CallResult
from ..turn import Turn
from .answers import answer_row, plan_generation
from .judging import DECIDED, judge_jobs_for_turn

Lookup = Callable[[list[CallRequest]], Mapping[str, Mapping]]  # requests -> {request key: stored response}


@dataclass
class PartitionPlan:
    key: str
    turns: list[Turn]
    prs: dict[str, dict]
    duplicates: int = 0  # turns left out: their history is held by another prompt file


@dataclass
class Outcome:
    estimate: Estimate
    partitions: list[str] = field(default_factory=list)
    turns: int = 0
    not_estimated: dict[str, str] = field(default_factory=dict)  # partition -> why


def _answer_stand_in(role: str, chars: int) -> dict:
    """An answer row of the expected length, for judging requests whose answers do not exist yet."""
    return {"content": "x" * chars, "tool_calls": None, "format_ok": True, "action": f"({role})",
            "error_kind": None, "excluded_reason": None}


def add_partition(est: Estimate, plan: PartitionPlan, cfg, mode: int, lookup: Lookup,
                  skip_share: Mapping[str, float]) -> None:
    rows: dict[str, dict[str, dict]] = {}
    planned_by_role = {}
    for role in ("king", "challenger"):
        planned = plan_generation(role, plan.turns, cfg, plan.prs, mode)
        planned_by_role[role] = {p.turn.turn_id: p for p in planned}
        reqs = [p.request for p in planned if p.request is not None]
        hits = lookup(reqs)
        rows[role] = {}
        for p in planned:
            if p.request is None:
                continue
            hit = hits.get(p.request.key)
            est.add(p.request, hit)
            if hit is not None:
                rows[role][p.turn.turn_id] = answer_row(role, p, CallResult.from_cache(p.request.key, dict(hit)), plan.prs)
    for t in plan.turns:
        if any(planned_by_role[r][t.turn_id].excluded_reason for r in ("king", "challenger")):
            continue
        k, c = rows["king"].get(t.turn_id), rows["challenger"].get(t.turn_id)
        exact = c is not None and (k is not None or mode == 1)
        if not exact:
            k = k or _stand_in_answer(est, planned_by_role["king"][t.turn_id].request, "king")
            c = c or _stand_in_answer(est, planned_by_role["challenger"][t.turn_id].request, "challenger")
        jobs = [j for j in judge_jobs_for_turn(t, k, c, plan.prs.get(t.instance_id), cfg, mode) if j.request is not None]
        stored = lookup([j.request for j in jobs if j.request is not None]) if exact else {}
        _judge_waves(est, jobs, stored, cfg, skip_share)


def _judge_waves(est: Estimate, jobs: list, stored: Mapping[str, Mapping], cfg, skip_share: Mapping[str, float]) -> None:
    """A turn's judge calls wave by wave, as the stage asks them: while every call of the waves so
    far is stored, the decided-bucket rule is applied to their replies (the calls it skips are
    known); after that, later judges are expected skipped at their observed share."""
    from .decided import decided_bucket
    from .judging import margins_of_reply
    from .stage import waves

    plan = waves(list(dict.fromkeys(j.judge for j in jobs)), bool(cfg.judges.skip_decided))
    known, decided = True, False
    done: dict[str, list] = {}
    for n, wave in enumerate(plan):
        batch = [j for j in jobs if j.judge in wave]
        for j in batch:
            hit = stored.get(j.request.key)
            if decided:
                est.add(j.request, None, 1.0)
            else:
                est.add(j.request, hit, 0.0 if hit is not None or known else skip_share.get(j.judge, 0.0))
            if hit is not None:
                done.setdefault(j.judge, []).append(margins_of_reply(hit.get("content"), j.order))
        if decided or not known:
            continue
        known = all(stored.get(j.request.key) is not None for j in batch)
        if known and n + 1 < len(plan):
            pending = Counter(j.judge for j in jobs if j.judge not in done)
            decided = decided_bucket(done, pending, cfg.metric_weights, cfg.buckets) is not None


def _stand_in_answer(est: Estimate, req: CallRequest | None, role: str) -> dict | None:
    if req is None:
        return None
    tokens, _ = est.observed.completion(req)
    return _answer_stand_in(role, int(tokens * 4))


def load_plans(home: Path, keys: list[str], cfg, prompt_file: Callable[[str], Path],
               pr_cache: Callable[[str], Path]) -> tuple[list[PartitionPlan], dict[str, str]]:
    """The partitions' turns and hidden records, read only; (plans, partitions not estimated and why)."""
    from ..sampling.history_index import HistoryIndex
    from ..sampling.pr_records import cached_pr_records, hidden_by_instance
    from ..sampling.prompt_files import PromptFileError, load_prompt_file

    s = cfg.sampling
    index = HistoryIndex(home)
    taken: dict[str, str] = {}
    plans, skipped = [], {}
    for key in keys:
        path = prompt_file(key)
        if not path.exists():
            skipped[key] = "no prompt file yet (it is sampled when it runs)"
            continue
        try:
            loaded = load_prompt_file(path, max_turns=200, max_bytes=s.max_prompt_file_bytes,
                                      max_history_chars=s.max_history_chars, max_obs_chars=s.max_observation_chars)
        except PromptFileError as e:
            skipped[key] = str(e)
            continue
        owners = index.owners(t.history_hash for t in loaded.turns)
        turns = []
        for t in loaded.turns:
            if owners.get(t.history_hash, key) != key or taken.setdefault(t.history_hash, key) != key:
                continue
            turns.append(t)
        records = [{"instance_id": t.instance_id, "hidden": t.hidden} for t in turns]
        df, _ = cached_pr_records(cfg.pr_records, sorted({t.instance_id for t in turns}), pr_cache(key),
                                  hidden_by_instance(records))
        plans.append(PartitionPlan(key, turns, _as_stored(key, turns, df), len(loaded.turns) - len(turns)))
    return plans, skipped


def _as_stored(key: str, turns: list[Turn], df) -> dict[str, dict]:
    """Hidden records as the duel step reads them back from the warehouse (JSON columns decoded)."""
    from .. import tables

    return tables.by_instance("pr_records", tables.frame("pr_records", df.to_dict("records"), key))


def skip_shares(rows: list[tuple[str, int, int]]) -> dict[str, float]:
    """judge -> the share of its judgements the decided-bucket rule skipped, from (judge, skipped,
    asked or skipped) rows of the warehouse."""
    return {judge: skipped / total for judge, skipped, total in rows if total}


SKIP_SQL = (f"SELECT judge, sum(CASE WHEN error = '{DECIDED}' THEN 1 ELSE 0 END), "
            f"sum(CASE WHEN coalesce(error_kind, '') != 'skipped' OR error = '{DECIDED}' THEN 1 ELSE 0 END) "
            "FROM duel.judge_scores GROUP BY judge")


def observed_from(rows: list[tuple[str, str, str]]) -> Observed:
    """Completion means from the call store's (model, role, response JSON) rows."""
    return Observed.from_rows((m or "", r or "", json.loads(resp)) for m, r, resp in rows)
