"""What the review page reads from the warehouse, through :class:`..warehouse.Warehouse`.

Every read is one short read-only connection (a local file's lock is held only while it lasts, so
runs keep writing between page loads; a DuckLake read is a cursor on this process's attached
catalog). Tables that do not exist yet read as empty. Rows come back decoded by the table codec
(:mod:`..tables`): JSON columns as Python values.
"""
from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import duckdb

from .. import tables
from ..settings import METRICS
from ..warehouse import SCHEMA, Warehouse

TABLES = ("sampled_turns", "pr_records", "king_answers", "challenger_answers", "judge_scores", "duel_verdict")
ROLE_TABLES = {"king": ("king_answers", "model"), "challenger": ("challenger_answers", "model"),
               "judge": ("judge_scores", "judge")}
# the columns a partition's turn list needs (not the histories, not the answers)
VERDICT_COLUMNS = ("turn_id", "opponent", "parsed", "score", "bucket", "bucket_note", "unparsed_reason",
                   "excluded_reason", "judges_parsed", "judges_total", "per_judge", "challenger_format_ok",
                   "leak_suspect", *(f"{m}_win" for m in METRICS))
JUDGE_COLUMNS = ("turn_id", "judge", "order", "opponent", "parsed", "parse_error", "retried", "winner", "reason",
                 "error_kind", "error", *(f"{m}_{s}" for m in METRICS for s in ("challenger", "opponent")))
TURN_COLUMNS = ("turn_id", "instance_id", "repo", "source", "step", "protocol", "history_messages", "history_chars")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class DuelRows:
    """Everything the warehouse holds about one turn (None / empty where a table has nothing yet)."""

    turn: dict | None
    king: dict | None
    challenger: dict | None
    judges: list[dict] = field(default_factory=list)
    verdict: dict | None = None
    pr_record: dict | None = None


class Reader:
    """The review page's reads. ``warehouse`` is opened by the caller (see ``Warehouse.from_env``)."""

    def __init__(self, warehouse: Warehouse):
        self.warehouse = warehouse
        self._all_tables = False  # once every table exists, the catalog is not asked again

    @contextmanager
    def _con(self):
        with self.warehouse.connect(read_only=True) as con:
            if self._all_tables:
                have = set(TABLES)
            else:
                have = {r[0] for r in con.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database() "
                    "AND table_schema = ?", [SCHEMA]).fetchall()}
                self._all_tables = set(TABLES) <= have
            yield con, have

    @staticmethod
    def _rows(con: duckdb.DuckDBPyConnection, have: set[str], table: str, columns: Sequence[str] | None,
              where: str, params: list) -> list[dict]:
        if table not in have:
            return []
        cols = ", ".join(_q(c) for c in columns) if columns else "*"
        cur = con.execute(f"SELECT {cols} FROM {SCHEMA}.{_q(table)} WHERE {where}", params)
        names = [d[0] for d in cur.description or []]
        return [tables.decode_row(table, dict(zip(names, row))) for row in cur.fetchall()]

    # ------------------------------------------------------------ partitions

    def partition_figures(self) -> dict[str, dict]:
        """Per partition: turns, verdict counts by bucket and exclusion, mean score, the turns whose panel
        had two judges or more and how many of those agreed, and tokens by role and model."""
        out: dict[str, dict] = {}
        with self._con() as (con, have):
            if "sampled_turns" in have:
                for key, n in con.execute(f"SELECT prompt_file, count(*) FROM {SCHEMA}.sampled_turns GROUP BY 1").fetchall():
                    out.setdefault(key, {})["turns"] = int(n)
            if "duel_verdict" in have:
                sql = f"""SELECT prompt_file, coalesce(bucket, CASE WHEN excluded_reason IS NOT NULL THEN 'excluded'
                          ELSE 'parse-fail' END), count(*) FROM {SCHEMA}.duel_verdict GROUP BY 1, 2"""
                for key, bucket, n in con.execute(sql).fetchall():
                    out.setdefault(key, {}).setdefault("verdicts", {})[bucket] = int(n)
                for key, mean in con.execute(f"SELECT prompt_file, avg(score) FROM {SCHEMA}.duel_verdict GROUP BY 1").fetchall():
                    out.setdefault(key, {})["mean_score"] = None if mean is None else float(mean)
                # a judge's verdict on a turn: its own score above, at or below 50
                sql = f"""WITH v AS (SELECT prompt_file, list_distinct(list_transform(map_values(json_transform(
                              per_judge, '"MAP(VARCHAR, DOUBLE)"')), x -> sign(x - 50))) AS sides,
                              len(map_keys(json_transform(per_judge, '"MAP(VARCHAR, DOUBLE)"'))) AS judges
                          FROM {SCHEMA}.duel_verdict WHERE per_judge IS NOT NULL AND per_judge NOT IN ('', 'null'))
                          SELECT prompt_file, count(*) FILTER (WHERE judges >= 2),
                                 count(*) FILTER (WHERE judges >= 2 AND len(sides) = 1) FROM v GROUP BY 1"""
                for key, panels, agreed in con.execute(sql).fetchall():
                    out.setdefault(key, {}).update(panel_turns=int(panels), agreed_turns=int(agreed))
            for role, (table, model_col) in ROLE_TABLES.items():
                if table not in have:
                    continue
                sql = (f"SELECT prompt_file, {_q(model_col)}, sum(coalesce(prompt_tokens, 0)), "
                       f"sum(coalesce(completion_tokens, 0)), sum(coalesce(cached_tokens, 0)) FROM {SCHEMA}.{_q(table)} "
                       f"WHERE coalesce(error_kind, '') <> 'skipped' AND {_q(model_col)} IS NOT NULL GROUP BY 1, 2")
                for key, model, p, c, k in con.execute(sql).fetchall():
                    out.setdefault(key, {}).setdefault("tokens", []).append((role, model, int(p), int(c), int(k)))
        return out

    # ------------------------------------------------------------ one partition

    def partition_turns(self, key: str) -> tuple[list[dict], list[dict], list[dict]]:
        """(turns, verdicts, judgements) of a partition, without histories or answers."""
        with self._con() as (con, have):
            return self._partition(con, have, key)

    def _partition(self, con, have: set[str], key: str) -> tuple[list[dict], list[dict], list[dict]]:
        where = "prompt_file = ?"
        return (self._rows(con, have, "sampled_turns", TURN_COLUMNS, where, [key]),
                self._rows(con, have, "duel_verdict", VERDICT_COLUMNS, where, [key]),
                self._rows(con, have, "judge_scores", JUDGE_COLUMNS, where, [key]))

    # ------------------------------------------------------------ one turn

    def duel(self, key: str, turn_id: str) -> tuple[DuelRows, tuple[list[dict], list[dict], list[dict]]]:
        """The turn's rows, and its partition's turn list (for the review queue), on one connection
        (few queries: on a DuckLake each one asks the catalog)."""
        where, params = "prompt_file = ? AND turn_id = ?", [key, turn_id]
        with self._con() as (con, have):
            partition = self._partition(con, have, key)
            turn = self._rows(con, have, "sampled_turns", None, where, params)
            answers: list[dict] = []
            if {"king_answers", "challenger_answers"} <= have:  # both in one query
                cur = con.execute(f"SELECT * FROM {SCHEMA}.king_answers WHERE {where} UNION ALL BY NAME "
                                  f"SELECT * FROM {SCHEMA}.challenger_answers WHERE {where}", params + params)
                names = [d[0] for d in cur.description or []]
                answers = [tables.decode_row("challenger_answers", dict(zip(names, r))) for r in cur.fetchall()]
            else:
                for t in ("king_answers", "challenger_answers"):
                    answers += self._rows(con, have, t, None, where, params)
            judges = self._rows(con, have, "judge_scores", None, where, params)
            instance = (turn or answers or [{}])[0].get("instance_id")
            prs = self._rows(con, have, "pr_records", None, "prompt_file = ? AND instance_id = ?", [key, instance]) \
                if instance else []
        judges.sort(key=lambda r: (str(r.get("judge")), str(r.get("order"))))
        role = {a.get("role"): a for a in answers}
        verdict = next((v for v in partition[1] if v["turn_id"] == turn_id), None)
        rows = DuelRows(turn=turn[0] if turn else None, king=role.get("king"), challenger=role.get("challenger"),
                        judges=judges, verdict=verdict, pr_record=prs[0] if prs else None)
        return rows, partition
