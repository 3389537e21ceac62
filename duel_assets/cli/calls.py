"""`duel-assets calls`: what the call store holds per endpoint and model; removing an endpoint's calls."""
from __future__ import annotations

import sys
from datetime import datetime, timezone


def _when(ts) -> str:
    return datetime.fromtimestamp(float(ts), timezone.utc).strftime("%Y-%m-%d %H:%M") if ts else "-"


def cmd_calls(args) -> int:
    from duel_assets.lib.calls.store_inventory import UNKNOWN
    from duel_assets.lib.calls.store_pg import open_store
    from duel_assets.lib.settings import Paths, call_store_kind, endpoint_id, mask_url

    paths = Paths.from_env()
    where = paths.call_cache
    pg = bool(paths.call_cache_url) and call_store_kind(where) == "postgres"
    if not pg and not paths.cache_db.exists() and not paths.call_cache_url:
        print(f"call store: SQLite {where} (empty: no call made yet)")
        return 0
    store = open_store(where)
    try:
        print(f"call store: {'PostgreSQL ' + mask_url(where) if pg else 'SQLite ' + where}")
        if args.remove_endpoint:
            target = UNKNOWN if args.remove_endpoint == UNKNOWN else endpoint_id(args.remove_endpoint)
            n = store.remove_endpoint(target)
            if not n:
                known = sorted({r["endpoint"] for r in store.holdings()})
                print(f"no calls stored for {target}; endpoints in the store: {', '.join(known) or 'none'}",
                      file=sys.stderr)
                return 1
            print(f"removed {n} calls of {target}: the next run pays for them again")
            return 0
        rows = store.holdings()
        learnt = store.downgrade_rows()
    finally:
        store.close()
    if learnt:  # what an endpoint refused: its calls go without it (--remove-endpoint forgets it too)
        print("refused by the endpoint (learnt from its refusals):")
    for d in learnt:
        what = f"at most {d['value']} request(s) in flight" if d["switch"] == "concurrency" else f"{d['switch']} = {d['value']}"
        print(f"  {d['endpoint']} {'(every model)' if d['model'] == '*' else d['model']}: {what} since "
              f"{_when(d['created'])} ({d['reason']})")
    if not rows:
        print("no calls stored")
        return 0
    table = [("endpoint", "model", "calls", "stand-in", "first stored (UTC)", "last stored (UTC)")]
    table += [(r["endpoint"], r["model"] or "-", str(r["calls"]), str(r["standin"]), _when(r["first"]), _when(r["last"]))
              for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) if i < 4 else cell
                        for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
    if any(r["endpoint"] == UNKNOWN for r in rows):
        print(f"\n{UNKNOWN}: calls stored before the endpoint was part of a call's identity; they are never reused "
              f"(`duel-assets calls --remove-endpoint {UNKNOWN}` removes them)")
    return 0


def refusal_lines(result, key: str) -> list[str]:
    """``[key] <asset>: N of M calls failed; first <kind>: <the provider's message>`` for each asset
    of a run whose calls partly failed (a step that failed says so in its own failure line)."""
    out = []
    for ev in result.get_asset_materialization_events():
        mat = ev.event_specific_data.materialization
        md = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
        if not md.get("llm_failures"):
            continue
        firsts = "; ".join(f"first {k}: {t}" for k, t in (md.get("llm_first_error_by_kind") or {}).items())
        out.append(f"[{key}] {mat.asset_key.to_user_string()}: {md['llm_failures']} of {md.get('llm_requested')} calls "
                   f"failed{'; ' + firsts if firsts else ''}")
    return out
