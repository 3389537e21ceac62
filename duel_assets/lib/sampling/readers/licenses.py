"""Licence and attribution facts of the known sources, as data for the export card.

Only facts read from a dataset card or repository are stated; where the licence was not checked the
entry says so (``license`` is None) rather than guess. Per-row licences (CoderForge's ``license``
column, the licence of each task's repository) travel with each turn as ``Turn.license``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class SourceLicense:
    dataset: str
    license: str | None  # SPDX-style id, or None when not verified
    attribution: str  # what a user of derived data owes
    per_row: bool  # rows carry their own ``license`` column
    note: str
    path_markers: tuple[str, ...] = ()  # lower-case substrings of a source path that name this dataset
    formats: tuple[str, ...] = ()  # source formats only this family uses


KNOWN: tuple[SourceLicense, ...] = (
    SourceLicense("allenai/Sera-* (raw SERA trajectories)", "ODC-By-1.0",
                  "required: credit the SERA datasets (Allen Institute for AI) wherever the data or derivatives are shared",
                  False, "ODC-By per the dataset cards", ("allenai/sera",), ("sera",)),
    SourceLicense("AmanPriyanshu/tool-reasoning-sft-CODING-allenai-SERA-data-cleaned-rectified", "ODC-By-1.0",
                  "required: credit the SERA datasets (Allen Institute for AI) and the rectified release",
                  False, "odc-by per the dataset card; derived from the four SERA sets", ("sera-data-cleaned-rectified",),
                  ("sera_rectified",)),
    SourceLicense("AlienKevin/SWE-ZERO-12M-trajectories", "Apache-2.0",
                  "keep the licence notice; tasks come from nebius/SWE-rebench-V2-PRs", False,
                  "Apache-2.0 per the dataset's ADP documentation", ("swe-zero",), ()),
    SourceLicense("togethercomputer/CoderForge-Preview", None,
                  "follow each row's licence (the task repository's) and the dataset card", True,
                  "rows carry a per-repository `license` column; the dataset-level licence was not checked here",
                  ("coderforge",), ("coderforge",)),
    SourceLicense("nebius/SWE-rebench-V2 / SWE-rebench-V2-PRs", None, "see the dataset card", False,
                  "licence not checked here", ("swe-rebench",), ()),
    SourceLicense("SWE-agent/mini-swe-agent, SWE-agent/SWE-agent, SWE-bench/SWE-smith (repository test data)", "MIT",
                  "keep the copyright and licence notice of the repository", False,
                  "MIT per each repository's LICENSE", ("mini-swe-agent", "swe-agent/", "swe-smith"), ()),
)

BUNDLED = SourceLicense("duel_assets bundled samples", None, "none", False,
                        "synthetic rows written for this project's demo and tests", ("bundled:",), ())
UNKNOWN = SourceLicense("(unknown source)", None, "check the source's own terms", False,
                        "no licence facts recorded for this source")


def source_license(fmt: str, path: str) -> dict:
    """What is known of a configured source's licence: by its path first, then by its format."""
    p = (path or "").lower()
    for entry in (BUNDLED, *KNOWN):
        if any(m in p for m in entry.path_markers):
            return asdict(entry)
    for entry in KNOWN:
        if fmt in entry.formats:
            return asdict(entry)
    return asdict(UNKNOWN)
