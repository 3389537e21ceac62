"""`duel-assets estimate` (and `run --estimate`): what the partitions a run would touch would cost."""
from __future__ import annotations

import json
import sys

from duel_assets.lib.settings import ConfigError, Paths, endpoints, env, load_config


def targets(keys: list[str], paths: Paths, with_registered: bool = True) -> list[str]:
    """The partitions a run would touch: ``keys``, else every registered partition and prompt file."""
    if keys:
        return list(dict.fromkeys(keys))
    from duel_assets.lib.watch import scan_prompt_dir

    on_disk, _ = scan_prompt_dir(paths.prompt_dir)
    found = list(on_disk)
    if with_registered:
        from duel_assets.cli.common import instance, registered

        found += registered(instance(paths))
    return sorted(dict.fromkeys(found))


def estimate(keys: list[str], paths: Paths, cfg=None) -> dict:
    """The estimate as one JSON-able object: per role and model, totals, partitions left out."""
    from duel_assets.lib.calls.estimate import OBSERVED_LIMIT, Estimate
    from duel_assets.lib.calls.store_pg import open_store
    from duel_assets.lib.duel import estimate as plan

    cfg = cfg or load_config()
    store = open_store(paths.call_cache)
    try:
        observed = plan.observed_from(store.recent_calls(OBSERVED_LIMIT))
        scopes = _scopes(store, cfg)

        def lookup(reqs):
            """The stored calls among ``reqs``, each looked up at the endpoint its role calls."""
            groups: dict = {}
            for r in reqs:
                groups.setdefault(endpoints.route(cfg, r.role, r.model), []).append(r)
            out: dict = {}
            for name, group in groups.items():
                if name in scopes:
                    out.update(scopes[name].get_many(group))
            return out

        est = Estimate(cfg.prices, observed)
        plans, left_out = plan.load_plans(paths.home, keys, cfg, paths.prompt_file, paths.pr_records_cache)
        shares = plan.skip_shares(_skip_rows(paths))
        for p in plans:
            plan.add_partition(est, p, cfg, env.duel_mode(), lookup, shares)
    finally:
        store.close()
    return {"partitions": [p.key for p in plans], "turns": sum(len(p.turns) for p in plans),
            "turns_held_elsewhere": sum(p.duplicates for p in plans), "not_estimated": left_out,
            "endpoint": ", ".join(s.endpoint for s in scopes.values()) or None, "by_role": est.rows(), "total": est.totals(),
            "decided_skip_share": shares}


def _scopes(store, cfg) -> dict:
    """The call store as each endpoint the chain's roles use sees it, by endpoint name (one whose URL
    is not set has none: nothing is stored for it)."""
    from duel_assets.lib.calls.scope import EndpointCalls

    out = {}
    for name in endpoints.used(cfg):
        spec = cfg.endpoints.get(name)
        try:
            ep = env.resolve_endpoint() if spec is None else endpoints.spec_endpoint(name, spec)
        except ConfigError:
            ep = None
        if ep is not None:
            out[name] = EndpointCalls(store, ep.id)
            out[name].downgrades.update(store.downgrades(ep.id))
    return out


def _skip_rows(paths: Paths) -> list[tuple]:
    """(judge, skipped by the decided-bucket rule, judgements) from the warehouse; none before any run."""
    from duel_assets.lib.duel import estimate as plan
    from duel_assets.lib.warehouse import Warehouse

    try:
        return Warehouse.from_env(paths.home).query(plan.SKIP_SQL)
    except Exception:  # no warehouse yet, or no judge_scores table: nothing observed
        return []


def _usd(x) -> str:
    return "n/a" if x is None else f"${x:,.4f}"


def lines(out: dict) -> list[str]:
    t = out["total"]
    head = (f"estimate for {len(out['partitions'])} partition(s), {out['turns']} turns "
            f"(endpoint {out['endpoint'] or 'none configured'}):")
    rows = [head, f"  {'role':<11}{'model':<26}{'calls':>7}{'stored':>8}{'to pay':>9}{'prompt tok':>12}{'cached':>8}"
                  f"{'compl. tok':>12}  {'from':<17}{'online':>11}{'batch':>11}"]
    for r in out["by_role"]:
        share = "" if r["cached_prompt_share"] is None else f"{r['cached_prompt_share']:.0%}"
        rows.append(f"  {r['role']:<11}{r['model'][:25]:<26}{r['calls']:>7}{r['stored']:>8}{r['to_pay']:>9g}"
                    f"{r['prompt_tokens']:>12,}{share:>8}{r['completion_tokens']:>12,}  {r['completion_from'] or '-':<17}"
                    f"{_usd(r['online_usd']):>11}{_usd(r['batch_usd']):>11}")
    rows.append(f"  total: {t['calls']} calls, {t['stored']} already in the call store (free; they cost "
                f"{_usd(t['stored_paid_usd'])} when bought), {t['to_pay']:g} to pay"
                + (f" (besides ~{t['expected_skipped']:g} judge calls the decided-bucket rule is expected to skip)"
                   if t["expected_skipped"] else "")
                + f": {_usd(t['online_usd'])} online, {_usd(t['batch_usd'])} batch")
    if t["unpriced_models"]:
        rows.append(f"  no [prices] for {', '.join(t['unpriced_models'])}: their cost is n/a")
    if any(r["completion_from"] == "max_tokens" for r in out["by_role"]):
        rows.append("  completion tokens at max_tokens (no call of that model in the call store yet): an upper bound")
    for key, why in out["not_estimated"].items():
        rows.append(f"  not estimated: {key}: {why}")
    return rows


def print_estimate(keys: list[str], paths: Paths, as_json: bool = False) -> int:
    out = estimate(keys, paths)
    if as_json:
        print(json.dumps(out, indent=1))
    else:
        print("\n".join(lines(out)))
    return 0


def cmd_estimate(args) -> int:
    from duel_assets.lib.settings.preflight import validate_for_work

    try:
        validate_for_work()
    except ConfigError as e:
        for line in e.errors:
            print(f"error: {line}", file=sys.stderr)
        return 2
    paths = Paths.from_env().ensure()
    return print_estimate(targets(list(args.partition or []), paths), paths, as_json=args.json)
