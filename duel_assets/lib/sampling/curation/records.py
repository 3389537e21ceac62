"""What a partition, report.md and the dataset card say about decontamination and near-duplicates.

``sampled_turns`` checks its prompt file's turns again when it loads them (:func:`recheck`: a
prompt file written by hand, or before a benchmark was configured): a turn matching a ``drop``
benchmark gets ``excluded_reason = "contaminated:<benchmark>:<way>"`` (it is never dueled: no call
is made for it), one matching a ``tag`` benchmark its ``contamination`` list. It writes the
partition's record, ``report/curation/<key>.json`` (:func:`partition_record`): what its prompt file
says (rows dropped while sampling, turns tagged, the benchmarks' versions, near-duplicate skips)
and what the load found. :func:`summarise` adds partitions up (a whole-source pool's rows are
counted once, not once per prompt file drawn from it) and :func:`markdown` writes the sections.
"""
from __future__ import annotations

from collections import Counter

from ...settings import ChainConfig
from ...turn import Turn
from .decontaminate import decide, decontaminator
from .window import CURATION_SKIPS as NEAR_REASONS
from .window import by_benchmark

WAYS_TEXT = {
    "instance_id": "the same instance id",
    "repo_commit": "the same repository and base commit",
    "repo_window": "the same repository and a PR created within {window:g} days of the instance's",
    "patch_overlap": "the same repository, and the turn's hidden patch changes a file of the gold patch in intersecting hunks",
    "problem_statement": "a near-duplicate problem statement (MinHash of word 5-shingles, estimated Jaccard >= {threshold:g})",
}


def recheck(turns: list[Turn], cfg: ChainConfig) -> dict:
    """Set each turn's ``excluded_reason`` and ``contamination`` from the configured benchmarks; the
    counts per benchmark and way."""
    d = decontaminator(cfg)
    excluded: Counter = Counter()
    tagged: Counter = Counter()
    if d is not None:
        d.prefetch([(t.instance_id, t.repo) for t in turns])
    for t in turns:
        dec = decide(d.check(t.instance_id, t.repo, t.history, t.source_meta, t.hidden)) if d is not None else None
        t.excluded_reason = dec.excluded_reason if dec else None
        t.contamination = list(dec.tags) if dec and dec.tags else None
        if t.excluded_reason:
            excluded[t.excluded_reason] += 1
        tagged.update(t.contamination or [])
    return {"excluded_turns": by_benchmark(excluded), "tagged_turns": by_benchmark(tagged)}


def partition_record(meta: dict, at_load: dict, turns: int) -> dict:
    """The partition's record from its prompt file's sections and the load's check. Skips of a
    whole-source pool are the pool's (the same in each prompt file drawn from it), kept apart."""
    sources = meta.get("sources") or []
    window: Counter = Counter()
    for i in sources:
        if i.get("mode") != "pool":
            window.update(i.get("curation_skips") or {})
    return {"turns": turns, "decontamination": meta.get("decontamination"), "at_load": at_load,
            "near_duplicates": meta.get("near_duplicates"), "window_skips": dict(window),
            "pool_skips": [{"path": i.get("path"), "format": i.get("format"), "skips": i["curation_skips"]}
                           for i in sources if i.get("mode") == "pool" and i.get("curation_skips")]}


def metadata_counts(record: dict) -> dict[str, int]:
    """``{"<benchmark>:<way> rows dropped|turns excluded|turns tagged": n}`` of one partition, and its
    near-duplicate skips by reason (a pool's skips are the whole source's)."""
    out: dict[str, int] = {}
    skips = Counter(record.get("window_skips") or {})
    for p in record.get("pool_skips") or []:
        skips.update(p["skips"])
    for label, n in sorted(skips.items()):
        key = f"{label.removeprefix('contaminated:')} rows dropped" if label.startswith("contaminated:") else label
        out[key] = n
    for what, field in (("turns excluded", "excluded_turns"), ("turns tagged", "tagged_turns")):
        for bench, ways in sorted(((record.get("at_load") or {}).get(field) or {}).items()):
            for way, n in sorted(ways.items()):
                out[f"{bench}:{way} {what}"] = n
    return out


def _add(into: dict, counts: dict | None, column: str) -> None:
    for bench, ways in (counts or {}).items():
        for way, n in ways.items():
            into.setdefault((bench, way), Counter())[column] += n


def summarise(records: dict[str, dict]) -> dict:
    """The partitions' records added up: counts per (benchmark, way), the benchmarks' versions, and
    the near-duplicate settings and skips."""
    counts: dict = {}
    pools: dict = {}
    versions: dict = {}
    near: dict = {"settings": None, "skipped": Counter()}
    settings = None
    skips: Counter = Counter()
    for r in records.values():
        d = r.get("decontamination") or {}
        if d:
            settings = {k: d.get(k) for k in ("ways", "window_days", "problem_threshold", "num_perm", "pr_records")}
            for v in d.get("benchmarks") or []:
                versions[v["name"]] = v
        skips.update(r.get("window_skips") or {})
        for p in r.get("pool_skips") or []:
            key = (p["format"], p["path"])
            pools[key] = Counter(pools.get(key)) | Counter(p["skips"])
        _add(counts, (r.get("at_load") or {}).get("excluded_turns"), "turns_excluded")
        _add(counts, (r.get("at_load") or {}).get("tagged_turns"), "turns_tagged")
        if r.get("near_duplicates"):
            near["settings"] = {k: v for k, v in r["near_duplicates"].items() if k != "skipped"}
    for p_skips in pools.values():
        skips.update(p_skips)
    _add(counts, by_benchmark({k: n for k, n in skips.items() if k.startswith("contaminated:")}), "rows_dropped")
    near["skipped"] = Counter({k: skips.get(k, 0) for k in NEAR_REASONS})
    return {"settings": settings, "versions": versions, "counts": counts, "near": near}


def _version(v: dict) -> str:
    files = ", ".join(f"{f['file'].rsplit('/', 1)[-1]} ({f.get('version') or f.get('modified')}, {f['bytes']} B)"
                      for f in v.get("files") or [])
    return (f"| {v['name']} | {v['path']} | {v['split']} | {v.get('revision') or '-'} | {v['policy']} | {v['instances']} | "
            f"`{v['ids_sha256']}` | {files} |")


def markdown(summary: dict, cfg: ChainConfig) -> list[str]:
    """The "Decontamination" and "Near-duplicates" sections."""
    lines = ["## Decontamination", ""]
    settings, versions = summary["settings"], summary["versions"]
    if not versions:
        configured = [b.name for b in cfg.decontamination.benchmarks]
        lines += ["No benchmark was checked: " + ("the prompt files were sampled and loaded before "
                  f"[decontamination] named {', '.join(configured)}." if configured else "[decontamination] names none."), ""]
    else:
        lines += ["Each turn was checked against every benchmark instance, in this order of strength (the "
                  "strongest way is the one counted):", ""]
        lines += [f"{i}. `{w}`: " + WAYS_TEXT[w].format(window=settings["window_days"], threshold=settings["problem_threshold"])
                  for i, w in enumerate(settings["ways"], 1)]
        lines += ["", "PR records (base commit, creation date, patch) were " + ("looked up in `[[pr_records]]`"
                  if settings["pr_records"] else "not looked up") + " for turns of a benchmark's repository.", "",
                  "| benchmark | path | split | revision | policy | instances | ids sha256 | files read |",
                  "|---|---|---|---|---|---:|---|---|", *[_version(v) for _, v in sorted(versions.items())], "",
                  "Rows dropped while sampling never became turns; turns excluded when their prompt file was loaded are "
                  "in the tables with `excluded_reason = \"contaminated:<benchmark>:<way>\"` and no call was made for "
                  "them; tagged turns are exported with their `contamination` column.", "",
                  "| benchmark | way | rows dropped while sampling | turns excluded at load | turns tagged |",
                  "|---|---|---:|---:|---:|"]
        counts = summary["counts"]
        for (bench, way), c in sorted(counts.items()):
            lines.append(f"| {bench} | {way} | {c['rows_dropped']} | {c['turns_excluded']} | {c['turns_tagged']} |")
        if not counts:
            lines.append("| - | - | 0 | 0 | 0 |")
    near = summary["near"]
    lines += ["", "## Near-duplicates", ""]
    if near["settings"] is None:
        lines.append("Near-duplicate turns were not screened ([near_duplicates] enabled = false when these prompt files "
                     "were sampled); identical histories are never sampled twice.")
    else:
        s = near["settings"]
        caps = ", ".join(f"{k.removeprefix('max_').replace('_', ' ')} {s[k]}" for k in ("max_per_instance", "max_per_repo") if s[k])
        lines += [f"Two turns are near-duplicates when the MinHash ({s['num_perm']} permutations, word 3-shingles of "
                  "text with temporary paths, hex ids, times and numbers normalised) of their tasks and of their last "
                  f"{s['last_steps']} steps with the move both reach an estimated Jaccard of {s['threshold']:g}; one turn "
                  "per cluster is kept. Caps: " + (caps or "none") + ".", "",
                  "| skipped because | turns |", "|---|---:|",
                  *[f"| {r} | {near['skipped'].get(r, 0)} |" for r in NEAR_REASONS]]
    return lines
