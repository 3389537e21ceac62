"""A judge of known quality for the offline stand-in (``standin --judge-accuracy P --position-bias Q
--labels FILE``), so that the calibration's own measurement can be tested. Not a model.

A judge request is matched to a labelled pair by its ``<answer_A>`` / ``<answer_B>`` blocks (rendered
exactly as the duel renders answers, in the request's last message) and, when several pairs share
those answers, by its history (the chat messages the request starts with, rendered as the duel
renders a turn's shared prefix). Requests that match no pair get None (the stand-in then answers as
usual).

How it decides, for judge model M and seed S:

* **opinion** (once per pair and judge model, so both orders of a pair agree): correct with
  probability P — the labelled side wins (per metric: the metric label where the pair has one,
  else the overall label; ``tie`` scores both sides alike); otherwise wrong — the other side wins
  every metric (for a tie-labelled pair, ``a`` or ``b`` at random);
* **position bias** (per request body): with probability Q the judgement ignores the pair and
  gives position A every metric.

Hence one judgement is right with probability (1 - Q)·P + Q·[the better side is at A]; a pair's
two orders give the same verdict (position consistency) with probability 1 - Q when its label is
A or B and (1 - Q)² for a tie label; and the duel rule's accuracy on A/B-labelled pairs is P when
Q = 0 (the two orders of a biased pair cancel into a tie otherwise). The winning side scores 8 and
the losing side 4 on a metric; a tie is 6 and 6. Everything is a hash of (seed, ...), so replies
are deterministic per request body and seed.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from ..duel.messages import render_answer, shared_prefix
from ..settings import METRICS
from .pairs import LabelledPair, read_set

WIN, LOSE, EVEN = 8, 4, 6


def _between(text: str, tag: str) -> str | None:
    m = re.search(rf"<{tag}>\n?(.*?)\n?</{tag}>", text, re.DOTALL)
    return m.group(1).strip() if m else None


def _shared_messages(a: list[dict], b: list[dict]) -> int:
    """How many leading messages two message lists have in common."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _u(*parts) -> float:
    """A uniform draw in [0, 1) from a hash of ``parts``."""
    return int(hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:13], 16) / 16 ** 13


def _text(m) -> str:
    c = m.get("content") if isinstance(m, dict) else None
    if isinstance(c, list):
        c = "".join(p.get("text", "") for p in c if isinstance(p, dict))
    return c or ""


def _history(messages: list) -> list[dict]:
    """The messages a judge request starts with, up to its PR record."""
    out = []
    for m in messages:
        if "<pr_record>" in _text(m):
            break
        out.append(m)
    return out


class JudgeOracle:
    def __init__(self, pairs: list[LabelledPair], accuracy: float, position_bias: float = 0.0, seed: int = 0):
        if not 0 <= accuracy <= 1 or not 0 <= position_bias <= 1:
            raise ValueError("judge accuracy and position bias must be within [0, 1]")
        self.accuracy, self.position_bias, self.seed = accuracy, position_bias, seed
        self.index: dict[tuple[str, str], list[tuple[LabelledPair, bool]]] = {}
        for p in pairs:
            ra, rb = (render_answer(m.get("content"), m.get("tool_calls")).strip() for m in (p.a, p.b))
            self.index.setdefault((ra, rb), []).append((p, True))
            if rb != ra:
                self.index.setdefault((rb, ra), []).append((p, False))

    @classmethod
    def from_file(cls, path: Path | str, accuracy: float, position_bias: float = 0.0, seed: int = 0) -> JudgeOracle:
        return cls(read_set(path).pairs, accuracy, position_bias, seed)

    def __len__(self) -> int:
        return len({id(p) for cands in self.index.values() for p, _ in cands})

    def match(self, messages: list) -> tuple[LabelledPair, bool] | None:
        """(pair, ``a`` shown as A) for a judge request's messages, or None."""
        text = _text(messages[-1]) if messages else ""
        a, b = _between(text, "answer_A"), _between(text, "answer_B")
        cands = self.index.get((a, b)) if a is not None and b is not None else None
        if not cands:
            return None
        if len(cands) == 1:
            return cands[0]
        # the same answers in several pairs: the pair whose history the request starts with (a
        # history trimmed for the judges keeps its first messages)
        shown = _history(messages)
        return max(cands, key=lambda c: _shared_messages(shared_prefix(c[0].as_turn()), shown))

    def verdict(self, body: dict) -> dict | None:
        """The judge reply JSON for a request about a labelled pair, or None."""
        found = self.match(body.get("messages") or [])
        if found is None:
            return None
        pair, a_first = found
        model = str(body.get("model") or "")
        pos = {"a": "A" if a_first else "B", "b": "B" if a_first else "A"}  # side -> position in this request
        side_of = {"A": "a", "B": "b"}  # label -> side
        if _u(self.seed, "bias", hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()) < self.position_bias:
            cells, why = {m: "A" for m in METRICS}, "position bias"
        elif _u(self.seed, "opinion", pair.id, model) < self.accuracy:
            cells = {m: pos[side_of[lab]] if lab in side_of else "tie"
                     for m in METRICS for lab in [pair.metric_labels.get(m, pair.label)]}
            why = "opinion right"
        else:
            if pair.label == "tie":
                wrong = "a" if _u(self.seed, "tie-side", pair.id, model) < 0.5 else "b"
            else:
                wrong = "b" if pair.label == "A" else "a"
            cells, why = {m: pos[wrong] for m in METRICS}, "opinion wrong"
        scores = {m: {"A": EVEN, "B": EVEN} if w == "tie" else {w: WIN, ("B" if w == "A" else "A"): LOSE}
                  for m, w in cells.items()}
        tot = {s: sum(scores[m][s] for m in METRICS) for s in ("A", "B")}
        winner = "A" if tot["A"] > tot["B"] else "B" if tot["B"] > tot["A"] else "tie"
        return {"scores": scores, "winner": winner,
                "reason": f"stand-in judge oracle (not a model): labelled pair {pair.id}, {why}."}
