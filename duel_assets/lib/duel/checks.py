"""Rate checks on answers and judgements against `[checks]` (the asset checks' logic)."""
from __future__ import annotations

from dataclasses import dataclass

from ..settings import ChainConfig


@dataclass
class RateCheck:
    name: str
    passed: bool
    rate: float | None
    threshold: float
    numerator: int
    denominator: int
    description: str


def rate_check(name: str, numerator: int, denominator: int, threshold: float, at_most: bool, what: str) -> RateCheck:
    """Passes when the rate is >= threshold (or <= for ``at_most``); an empty denominator passes."""
    rate = numerator / denominator if denominator else None
    ok = rate is None or (rate <= threshold if at_most else rate >= threshold)
    rel = "<=" if at_most else ">="
    return RateCheck(name, ok, None if rate is None else round(rate, 4), threshold, numerator, denominator,
                     f"{what}: {numerator}/{denominator} = {'-' if rate is None else f'{rate:.1%}'} (must be {rel} {threshold:.0%})")


def answer_checks(rows: list[dict], cfg: ChainConfig, role: str) -> list[RateCheck]:
    answered = [r for r in rows if not r.get("error_kind")]
    checks = [rate_check("format_ok_rate", sum(bool(r.get("format_ok")) for r in answered), len(answered),
                         cfg.checks.min_format_ok_rate, False, f"{role} answers in protocol")]
    if role == "challenger":
        checks.append(rate_check("leak_rate", sum(bool(r.get("leak_suspect")) for r in answered), len(answered),
                                 cfg.checks.max_leak_rate, True, "challenger answers suspected of using the hidden patch"))
    return checks


def judge_checks(rows: list[dict], cfg: ChainConfig) -> list[RateCheck]:
    judged = [r for r in rows if r.get("error_kind") != "skipped"]
    return [rate_check("parse_rate", sum(bool(r.get("parsed")) for r in judged), len(judged), cfg.checks.min_parse_rate,
                       False, "judge replies that parsed")]
