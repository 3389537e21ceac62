"""Publishing the export folder to a Hugging Face dataset repository.

What is uploaded is exactly the card (``README.md``) and the shards (``data/*.parquet``,
``jsonl/*.jsonl``) on disk, read under the export lock so that they agree; shards the repository
holds and the export no longer does are deleted by the same commit. Publishing is refused when the
export holds no row, when any of its rows was answered by the offline stand-in (unless forced:
those rows are for trying the pipeline, not for training), and when its gate rejects: the gate over
the partitions in the export, or any partition in it whose own gate is REJECT (an export written
with ``require_gate = false``). The token is ``HF_TOKEN`` (or ``HUGGINGFACE_API_KEY``) and never
leaves the client call.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..settings import ChainConfig, ConfigError, Paths
from ..system.locks import file_lock
from .card import select
from .paths import export_lock_path
from .report import overall_gate
from .summary import read_manifest, read_summaries

REPO_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}\Z")
REMOTE_SHARDS = ["data/*.parquet", "jsonl/*.jsonl"]  # deleted from the repository unless uploaded again


@dataclass
class Plan:
    repo: str
    revision: str | None
    private: bool
    files: list[tuple[str, int]] = field(default_factory=list)  # path in the export folder, bytes
    rows: int = 0
    standin_rows: int = 0
    refusals: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        where = f"datasets/{self.repo}" + (f" at revision {self.revision}" if self.revision else "")
        return [f"would upload {len(self.files)} files ({sum(n for _, n in self.files):,} bytes, {self.rows} rows) to "
                f"{where}" + (" (a new repository is created private)" if self.private else ""),
                *[f"  {p}  {n:,} bytes" for p, n in self.files],
                f"and delete the repository's files matching {' or '.join(REMOTE_SHARDS)} that are not listed above"]


def _rows(export: Path, files: list[str]) -> tuple[int, int]:
    """(rows, rows the stand-in answered) of the parquet shards."""
    import pyarrow.parquet as pq

    rows = standin = 0
    for f in files:
        if f.endswith(".parquet"):
            col = pq.read_table(export / f, columns=["standin"]).column("standin").to_pylist()
            rows += len(col)
            standin += sum(bool(x) for x in col)
    return rows, standin


def _listing(export: Path) -> list[tuple[str, int]]:
    out = []
    for sub, pattern in (("data", "*.parquet"), ("jsonl", "*.jsonl")):
        for f in sorted((export / sub).glob(pattern)) if (export / sub).is_dir() else []:
            if f.is_file() and not f.name.startswith("."):
                out.append((f"{sub}/{f.name}", f.stat().st_size))
    card = export / "README.md"
    return ([("README.md", card.stat().st_size)] if card.is_file() else []) + out


def plan(paths: Paths, cfg: ChainConfig, repo: str, revision: str | None = None, private: bool = False,
         force: bool = False) -> Plan:
    """What publishing would upload, and why it would be refused (``refusals``)."""
    if not REPO_ID.match(repo or ""):
        raise ConfigError(f"--repo {repo!r}: allowed: <owner>/<name> (letters, digits, '.', '_', '-')")
    p = Plan(repo, revision, private)
    export = paths.export_dir
    p.files = _listing(export)
    if not any(f == "README.md" for f, _ in p.files):
        p.refusals.append(f"{export} has no dataset card (README.md): materialize duel_report (duel-assets run) first")
        return p
    p.rows, p.standin_rows = _rows(export, [f for f, _ in p.files])
    if not p.rows:
        p.refusals.append(f"the export in {export} holds no row: nothing to publish")
    if p.standin_rows and not force:
        p.refusals.append(f"{p.standin_rows} of the export's {p.rows} rows were answered by the offline stand-in, not a "
                          "model: they are for trying the pipeline (--force publishes them anyway)")
    summaries = read_summaries(paths, [f.stem for f in paths.report_dir.glob("partitions/*.json")])
    manifests = {k: m for k in summaries if (m := read_manifest(paths, k)) is not None}
    included, _ = select(summaries, manifests, cfg)
    rejected = [k for k in included if summaries[k]["gate"]["verdict"] != "ACCEPT"]
    g = overall_gate({k: summaries[k] for k in included}, cfg.gate)
    if rejected:
        p.refusals.append(f"{len(rejected)} partitions in the export have a REJECT gate ({', '.join(rejected[:5])}"
                          f"{' ...' if len(rejected) > 5 else ''}): an export whose gate rejects is not published")
    elif included and g.verdict != "ACCEPT":
        p.refusals.append(f"the gate over the export's partitions is {g.verdict} ({'; '.join(g.reasons)}): not published")
    return p


def upload(paths: Paths, p: Plan, token: str) -> str:
    """Push the planned files in one commit; returns the commit's URL. The export lock is held
    meanwhile, so no report rewrites the card or the shards under the upload."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    with file_lock(export_lock_path(paths)):
        api.create_repo(p.repo, repo_type="dataset", private=p.private, exist_ok=True)
        if p.revision:
            api.create_branch(p.repo, branch=p.revision, repo_type="dataset", exist_ok=True)
        info = api.upload_folder(folder_path=str(paths.export_dir), repo_id=p.repo, repo_type="dataset",
                                 revision=p.revision, allow_patterns=[f for f, _ in p.files],
                                 delete_patterns=REMOTE_SHARDS,
                                 commit_message=f"duel-assets export: {p.rows} rows")
    return str(getattr(info, "commit_url", info))


def planned(paths: Paths, cfg: ChainConfig, *args, **kwargs) -> Plan:
    """:func:`plan` under the export lock (the card and shards listed are the ones on disk together)."""
    with file_lock(export_lock_path(paths)):
        return plan(paths, cfg, *args, **kwargs)
