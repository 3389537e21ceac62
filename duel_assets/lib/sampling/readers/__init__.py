"""Source readers, one module per scaffold family; each turns one source row into a
:class:`Trajectory` or raises :class:`BadRecord` with a short reason code (callers count the codes,
so one broken row never sinks the rest)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...turn import BadRecord, Trajectory
from .common import split_parallel_calls
from .mini_swe_agent import read_mini_swe_agent, read_swe_zero
from .openhands import read_coderforge
from .rectified import read_sera_rectified
from .swe_agent import read_sera, read_swe_agent

READERS: dict[str, Callable[[Any], Trajectory]] = {
    "swe_zero": read_swe_zero,
    "mini_swe_agent": read_mini_swe_agent,
    "coderforge": read_coderforge,
    "sera": read_sera,
    "sera_rectified": read_sera_rectified,
    "swe_agent": read_swe_agent,
}


def reader_for(fmt: str) -> Callable[[Any], Trajectory]:
    try:
        return READERS[fmt]
    except KeyError:
        raise BadRecord("unsupported_format", f"no reader for source format {fmt!r} yet") from None


__all__ = ["READERS", "reader_for", "split_parallel_calls", "read_swe_zero",
           "read_mini_swe_agent", "read_coderforge", "read_sera", "read_sera_rectified", "read_swe_agent"]
