"""Judge calibration: labelled duels, the panel measured on them, and the evidence the gate carries.

Modules:

* ``pairs``: the labelled-duel JSONL format (reader that counts and names every bad line, writer);
* ``steps`` / ``counterparts`` / ``make``: building a labelled set from real trajectory turns, each
  dataset step against a counterpart that is worse by construction;
* ``judging``: the configured panel on a set, both orders, through the duel's call layer and cache;
* ``measures`` / ``stats`` / ``thresholds``: accuracy, Cohen's kappa, position consistency, parse
  and tie rates with bootstrap intervals, and duel-score thresholds from data;
* ``report``: the summary (``calibrate --json``), its text form and where results are kept;
* ``evidence``: the latest calibration of the current panel, for the gate, report and card;
* ``oracle``: a judge of known accuracy and position bias for the offline stand-in.
"""
from __future__ import annotations

from pathlib import Path


def calibration_dir(home: Path) -> Path:
    """``$DUEL_HOME/calibration``: one ``<key>.jsonl`` per calibration set (one partition each)."""
    return Path(home) / "calibration"


def results_dir(home: Path) -> Path:
    """``$DUEL_HOME/calibration/results``: one ``<key>.json`` summary per calibrated set."""
    return calibration_dir(home) / "results"
