"""The gate's evidence: the latest calibration of the current judge panel.

``latest_calibration(home, panel)`` reads the summaries under ``$DUEL_HOME/calibration/results/``
and returns the newest whose panel is the configured one (same judges, any order), or None. Its
``lines()`` are ready for report.md and the dataset card; ``gate_metadata(home, panel)`` gives the
``judge_calibration`` entries of ``duel_verdict``'s metadata.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ..system.files import read_json
from . import results_dir


def answered_by(summary: dict) -> str:
    """Where a calibration's judges were asked, and whether the offline stand-in answered."""
    where = summary.get("endpoint") or "an endpoint not recorded"
    n, standin = int(summary.get("answered") or 0), int(summary.get("answered_by_standin") or 0)
    if standin and standin == n:
        return f"{where}, answered by the offline stand-in (not a model): these figures say nothing about a model"
    if standin:
        return f"{where}, {standin} of {n} judgements answered by the offline stand-in (not a model)"
    return where


@dataclass
class CalibrationEvidence:
    key: str
    created_at: str
    panel: list[str]
    pairs: int
    accuracy: float | None
    accuracy_ci: list[float] | None
    kappa: float | None
    kappa_ci: list[float] | None
    position_consistency: float | None
    parse_rate: float | None
    file: str
    summary_path: str
    endpoint: str | None = None  # where the judges were asked (None: recorded before endpoints were)
    answered: int = 0
    answered_by_standin: int = 0

    @staticmethod
    def _ci(ci) -> str:
        return f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and None not in ci else ""

    @staticmethod
    def _num(x) -> str:
        return "-" if x is None else f"{x:.3f}"

    def lines(self) -> list[str]:
        """Markdown lines for report.md and the dataset card, next to the gate."""
        return [
            f"Judge panel calibration (`{self.key}`, {self.pairs} labelled pairs, {self.created_at}; "
            f"panel {', '.join(self.panel)} at {answered_by(asdict(self))}; duel-score rule, 95% bootstrap intervals):",
            f"- accuracy {self._num(self.accuracy)}{self._ci(self.accuracy_ci)} (pairs labelled A or B), "
            f"Cohen's kappa {self._num(self.kappa)}{self._ci(self.kappa_ci)}",
            f"- position consistency {self._num(self.position_consistency)}, parse rate {self._num(self.parse_rate)}",
        ]

    def metadata(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        """One line: which set, how many pairs, when, and where the judges were asked."""
        return (f"{self.key}: {self.pairs} labelled pairs, {self.created_at}, panel {', '.join(self.panel)} at "
                f"{answered_by(asdict(self))}; accuracy {self._num(self.accuracy)}{self._ci(self.accuracy_ci)}, "
                f"kappa {self._num(self.kappa)}{self._ci(self.kappa_ci)}")


def _panel_key(panel) -> tuple[str, ...]:
    return tuple(sorted(set(panel or [])))


def latest_calibration(home: Path, panel: list[str]) -> CalibrationEvidence | None:
    """The newest calibration summary of exactly this panel, or None when there is none."""
    best = None
    for path in sorted(results_dir(home).glob("*.json")):
        s = read_json(path)
        if not isinstance(s, dict) or _panel_key(s.get("panel")) != _panel_key(panel) or "accuracy" not in s:
            continue
        if best is None or str(s.get("created_at")) > str(best[0].get("created_at")):
            best = (s, path)
    if best is None:
        return None
    s, path = best
    return CalibrationEvidence(
        key=s["key"], created_at=str(s.get("created_at")), panel=list(s["panel"]), pairs=int(s.get("pairs") or 0),
        accuracy=s.get("accuracy"), accuracy_ci=s.get("accuracy_ci"), kappa=s.get("kappa"), kappa_ci=s.get("kappa_ci"),
        position_consistency=s.get("position_consistency"), parse_rate=s.get("parse_rate"), file=str(s.get("file")),
        summary_path=str(path), endpoint=s.get("endpoint"), answered=int(s.get("answered") or 0),
        answered_by_standin=int(s.get("answered_by_standin") or 0))


def gate_metadata(home: Path, panel: list[str]) -> dict:
    """The evidence as readable metadata (:mod:`..readable`): ``judge_calibration`` (one line, or a note
    saying none exists for this panel), its figures as numbers and ``judge_calibration_summary``."""
    from ..readable import Markdown

    ev = latest_calibration(home, panel)
    if ev is None:
        return {"judge_calibration": f"none for panel {', '.join(panel)} (run `duel-assets calibrate FILE`)"}
    return {"judge_calibration": ev.line(), "judge_calibration_pairs": ev.pairs,
            "judge_calibration_accuracy": ev.accuracy, "judge_calibration_kappa": ev.kappa,
            "judge_calibration_position_consistency": ev.position_consistency,
            "judge_calibration_parse_rate": ev.parse_rate,
            "judge_calibration_summary": Markdown("\n".join(ev.lines()))}
