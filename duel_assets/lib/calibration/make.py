"""Building a labelled set from real trajectory turns (``duel-assets make-calibration``).

The turns are those the sampler sees (every usable turn of small local sources, the bundled samples
by default; numbered sample windows of large or hub sources), each distinct history + step once. A pair is the turn's own next
step (the dataset's ``reference``) against a counterpart of one kind (see ``counterparts``); the
tie share pits it against itself reworded. Kinds get equal shares of the non-tie pairs; a kind that
runs out of applicable turns leaves its share to the others, and a short set says so in its
header. The reference's position is balanced within every kind (and overall to within one), and
shuffled.
"""
from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..sampling.pr_records import read_pr_records
from ..sampling.prompt_files import turn_from_record
from ..sampling.sampler import build_pool, effective_sources, sample_for_key, shares, source_mode
from ..sampling.windows import numbered_keys
from ..settings import ChainConfig
from ..turn import Turn
from .counterparts import KINDS, TIE, Counterpart, Ctx, context, counterpart
from .pairs import LabelledPair

MAX_VARIANTS = 6
DEFAULT_TIE_SHARE = 0.125


@dataclass
class MadeSet:
    pairs: list[LabelledPair]
    header: dict


def distinct_turns(turns: list[Turn]) -> list[Turn]:
    """One turn per distinct (history, tools, reference): trajectories of one task often share
    their first steps, and a pair that repeats another measures nothing new."""
    seen, out = set(), []
    for t in turns:
        key = hashlib.sha256(json.dumps([t.history, t.tools, t.reference], sort_keys=True).encode()).hexdigest()
        if key not in seen:
            seen.add(key)
            out.append(t)
    return out


def source_turns(cfg: ChainConfig, n: int, cache_dir: Path | None = None) -> tuple[list[Turn], dict]:
    """Turns to build pairs from, and how they were read. Small local sources are read whole
    (``build_pool``); when a source is large or on the hub, ``n`` turns are drawn in the sampler's
    numbered windows (``calibration_<n>_<i>``), reading only the blocks or rows those windows need."""
    specs = effective_sources(cfg)
    if all(source_mode(s, cfg) == "pool" for s in specs):
        pool = build_pool(cfg)
        return pool.turns, {"mode": "pool", "pool_turns": len(pool.turns)}
    turns: list[Turn] = []
    pools: dict = {}
    for key in numbered_keys(n, cfg.sampling.turns_per_file, "calibration"):
        turns += [turn_from_record(r) for r in sample_for_key(key, cfg, pools, cache_dir)["turns"]]
    return turns, {"mode": "windows", "pool_turns": len(turns)}


def _candidates(kind: str, ctxs: list[Ctx], seed) -> Iterator[tuple[Ctx, Counterpart]]:
    """Counterparts of one kind: every turn's first variant, then second variants, and so on."""
    order = list(ctxs)
    random.Random(f"{seed}:{kind}").shuffle(order)
    for r in range(MAX_VARIANTS):
        for c in order:
            cp = counterpart(kind, c, r)
            if cp is not None:
                yield c, cp


def _allocate(n: int, kinds: tuple[str, ...], tie_share: float, ctxs: list[Ctx], seed) -> dict[str, list]:
    n_tie = round(n * tie_share) if TIE not in kinds else 0
    kinds = tuple(k for k in kinds if k != TIE)
    targets = dict(zip(kinds, shares(n - n_tie, [1.0] * len(kinds))))
    targets[TIE] = n_tie
    gens = {k: _candidates(k, ctxs, seed) for k in targets}
    got: dict[str, list] = {k: [] for k in targets}
    live = set()
    for k, target in targets.items():
        while len(got[k]) < target:
            item = next(gens[k], None)
            if item is None:
                break
            got[k].append(item)
        else:
            live.add(k)
    live.discard(TIE)  # ties keep their share; the other kinds cover for those that ran short
    deficit = n - sum(len(v) for v in got.values())
    while deficit > 0 and live:
        for k in sorted(live):
            item = next(gens[k], None)
            if item is None:
                live.discard(k)
                continue
            got[k].append(item)
            deficit -= 1
            if deficit == 0:
                break
    return got


def _positions(by_kind: dict[str, list], rng: random.Random) -> dict[str, list[str]]:
    """Where the dataset step goes, per kind: half A, half B; odd remainders alternate."""
    out, extra = {}, "A"
    for kind in sorted(by_kind):
        k = len(by_kind[kind])
        pos = ["A", "B"] * (k // 2)
        if k % 2:
            pos.append(extra)
            extra = "B" if extra == "A" else "A"
        rng.shuffle(pos)
        out[kind] = pos
    return out


def _pr_records(cfg: ChainConfig, ids: list[str]) -> dict[str, dict]:
    df = read_pr_records(cfg.pr_records.path or None, ids)
    out = {}
    for r in df.to_dict("records"):
        if not r["missing"]:
            out[r["instance_id"]] = {k: r[k] for k in ("repo", "problem_statement", "pr_description", "patch")}
            out[r["instance_id"]]["changed_files"] = json.loads(r["changed_files"] or "[]")
    return out


def _pair(c: Ctx, cp: Counterpart, pos: str, pr: dict | None) -> LabelledPair:
    t = c.turn
    ref = {"role": "assistant", "content": t.reference.get("content") or ""}
    if t.reference.get("tool_calls"):
        ref["tool_calls"] = t.reference["tool_calls"]
    a, b = (ref, cp.message) if pos == "A" else (cp.message, ref)
    label = "tie" if cp.kind == TIE else pos
    return LabelledPair(
        id=f"{cp.kind}.{cp.variant}.{t.turn_id}", history=t.history, a=a, b=b, label=label, tools=t.tools,
        metric_labels={m: label for m in cp.metrics}, kind=cp.kind, pr_record=pr,
        meta={"variant": cp.variant, "turn_id": t.turn_id, "instance_id": t.instance_id, "source": t.source,
              "protocol": t.protocol, "reference_position": pos},
    )


def make_set(cfg: ChainConfig, n: int, seed: int | None = None, tie_share: float = DEFAULT_TIE_SHARE,
             kinds: tuple[str, ...] = KINDS, cache_dir: Path | None = None) -> MadeSet:
    """``n`` labelled pairs (fewer, with the shortfall in the header, when the sources hold fewer)."""
    if n < 1:
        raise ValueError(f"--n must be at least 1, got {n}")
    if not 0 <= tie_share < 1:
        raise ValueError(f"tie share must be in [0, 1), got {tie_share}")
    unknown = sorted(set(kinds) - set(KINDS) - {TIE})
    if unknown:
        raise ValueError(f"unknown kind(s) {unknown} (known: {', '.join((*KINDS, TIE))})")
    seed = cfg.sampling.seed if seed is None else seed
    turns, read = source_turns(cfg, n, cache_dir)
    ctxs = [c for c in (context(t) for t in distinct_turns(turns)) if c is not None]
    got = _allocate(n, tuple(kinds), tie_share, ctxs, seed)
    rng = random.Random(f"calibration:{seed}")
    positions = _positions(got, rng)
    prs = _pr_records(cfg, sorted({c.turn.instance_id for items in got.values() for c, _ in items}))
    pairs = [_pair(c, cp, pos, prs.get(c.turn.instance_id))
             for kind in sorted(got) for (c, cp), pos in zip(got[kind], positions[kind])]
    rng.shuffle(pairs)
    non_tie = [p for p in pairs if p.label != "tie"]
    header = {
        "version": 1,
        "generator": "duel-assets make-calibration",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "requested": n, "pairs": len(pairs), "shortfall": n - len(pairs), "seed": seed, "tie_share": tie_share,
        "kinds": dict(sorted(Counter(p.kind for p in pairs).items())),
        "variants": dict(sorted(Counter(f"{p.kind}.{p.meta['variant']}" for p in pairs).items())),
        "labels": dict(Counter(p.label for p in pairs)),
        "reference_position": dict(Counter(p.meta["reference_position"] for p in non_tie)),
        "protocols": dict(Counter(p.protocol for p in pairs)),
        "sources": [{"format": s.format, "path": s.path} for s in effective_sources(cfg)],
        "read": read["mode"], "pool_turns": read["pool_turns"], "distinct_turns": len(ctxs),
        "pr_records_attached": sum(p.pr_record is not None for p in pairs),
    }
    return MadeSet(pairs, header)
