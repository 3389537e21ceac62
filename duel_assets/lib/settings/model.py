"""`chain.toml` as typed models: unknown keys are refused in every table, types are strict (a
string is never read as a list of characters, a number never as a boolean) and ranges are
enforced. Rules that tie two keys together are in :mod:`.load` (they name both keys)."""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, Field, PrivateAttr, field_validator

from .base import MATCH_WAYS, METRICS, Bucket, MatchWay, MetricName, PRRecordFormat, SourceFormat
from .calls_model import CallsConfig, EndpointSpec, PriceTables, RolesConfig
from .fields import Chars, Fraction, Name, Probability, Score, Table, Temperature, Tokens


class SourceSpec(Table):
    format: SourceFormat
    path: Name  # local file / folder / glob, hub dataset name, or hf:// URL
    split: Name = "train"
    weight: Annotated[float, Field(gt=0, le=1_000_000)] = 1.0


class PRRecordSpec(Table):
    path: Name  # parquet / JSON / JSONL, local or hub
    format: PRRecordFormat = "auto"  # which columns hold the record; auto: from the columns present


class PRRecordsConfig(Table):
    """``[pr_records] path = ...`` (one) or ``[[pr_records]]`` (several, each with ``path`` and an
    optional ``format``); no entry: the bundled sample records."""

    specs: list[PRRecordSpec] = []

    @property
    def path(self) -> str:
        """The first entry's path ("" when none: the bundled records)."""
        return self.specs[0].path if self.specs else ""

    @property
    def format(self) -> str:
        return self.specs[0].format if self.specs else "auto"


class SamplingConfig(Table):
    prompts: Annotated[int, Field(ge=1, le=10_000_000)] = 400  # turns `duel-assets sample` draws by default
    turns_per_file: Annotated[int, Field(ge=1, le=200)] = 200
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 0
    max_history_chars: Chars = 120_000  # longer histories are trimmed in the middle
    max_observation_chars: Chars = 20_000
    # sources larger than this (bytes) or on the hub are read block by block, only the blocks a
    # window needs; smaller ones are read whole and sampled exactly over all their turns
    block_mode_min_bytes: Annotated[int, Field(ge=0, le=1 << 50)] = 256 * 1024 * 1024
    turns_per_trajectory: Annotated[int, Field(ge=1, le=1000)] = 1  # block mode: turns taken from one trajectory
    jsonl_block_lines: Annotated[int, Field(ge=1, le=1_000_000)] = 256  # block mode: lines per JSONL block
    max_prompt_file_bytes: Annotated[int, Field(ge=1, le=1024**3)] = 64 * 1024 * 1024  # larger prompt files are refused


def _one_sql_predicate(text: str) -> str:
    """A DuckDB boolean expression, checked by DuckDB's own parser (not run)."""
    if text.strip():
        import duckdb

        try:
            statements = duckdb.extract_statements(f"SELECT * FROM rows WHERE {text}")
        except duckdb.Error as e:
            raise ValueError(f"a DuckDB SQL predicate (this one does not parse: {str(e).splitlines()[0]})") from None
        if len(statements) != 1:
            raise ValueError("one SQL predicate (this is several statements)")
    return text


class FiltersConfig(Table):
    min_reward: float = -1e9  # trajectories with a reward below this are skipped (no reward: kept)
    outcome: Literal["any", "submitted"] = "any"
    max_history_tokens: Annotated[int, Field(ge=0, le=2_500_000)] = 0  # 0: sampling.max_history_chars decides; else ~4 characters a token
    excluded_repos: list[Name] = []
    excluded_ids: list[Name] = []
    where: Annotated[str, AfterValidator(_one_sql_predicate)] = ""  # a DuckDB predicate over source rows


class GenerationConfig(Table):
    model: Name = "gpt-4o-mini"
    temperature: Temperature = 0.7
    max_tokens: Tokens = 1024
    max_resamples: Annotated[int, Field(ge=0, le=10)] = 2  # extra tries for an answer that breaks the protocol


class JudgeConfig(Table):
    models: Annotated[list[Name], Field(min_length=1)] = ["gpt-4o-mini"]  # the panel
    max_tokens: Tokens = 1024
    token_limits: dict[str, Tokens] = {}  # per-judge max_tokens override
    temperature: Temperature = 0.0
    position_swap: bool = True
    max_history_chars: Annotated[int, Field(ge=0, le=10_000_000)] = 0  # 0: the judges read the answers' own history (a shared, cacheable prefix)
    skip_decided: bool = True  # skip the remaining judges once a turn's verdict cannot change
    # ask for the judge-reply JSON schema: "auto" (json_schema, then what the endpoint takes), true, false
    structured: Literal["auto"] | bool = "auto"


class GateConfig(Table):
    min_margin: Annotated[float, Field(ge=-50, le=50)] = 5.0  # mean of (score - 50)
    resamples: Annotated[int, Field(ge=1, le=1_000_000)] = 2000
    confidence: Probability = 0.95
    min_parsed_fraction: Fraction = 0.8


class BucketConfig(Table):
    final: Score = 80.0
    refined: Score = 66.0


class LeakageConfig(Table):
    action: Literal["demote", "drop"] = "demote"  # leak suspects never go to final


class ChecksConfig(Table):
    min_parse_rate: Fraction = 0.9  # judge_scores: parsed judgements / judged
    max_leak_rate: Fraction = 0.2  # challenger_answers: leak suspects / answered
    min_format_ok_rate: Fraction = 0.8  # king_answers and challenger_answers: format_ok / answered


class ExportConfig(Table):
    buckets: Annotated[list[Bucket], Field(min_length=1)] = ["final", "refined"]
    require_gate: bool = True  # only partitions whose gate is ACCEPT
    # one turn per row as OpenAI chat messages or in the source's own encoding, or one source trajectory per row
    layout: Literal["openai", "source", "trajectory"] = "openai"
    reasoning: Literal["keep", "drop"] = "keep"  # assistant messages' reasoning in the SFT rows
    weight: Literal["none", "score"] = "none"  # trajectory rows: each trained message's weight = duel score / 100
    truncate_after_last_trained: bool = False  # trajectory rows end at their last trained message


class BenchmarkSpec(Table):
    """A benchmark's instance list, read like a source (local JSONL / JSON / parquet, hub name, hf:// URL)."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")]  # matches are named contaminated:<name>:<way>
    path: Name
    split: Name = "test"
    revision: Optional[Name] = None  # a hub dataset's branch, tag or commit
    policy: Literal["drop", "tag"] = "drop"


class DecontaminationConfig(Table):
    benchmarks: Annotated[list[BenchmarkSpec], Field(max_length=64)] = []
    ways: Annotated[list[MatchWay], Field(min_length=1)] = list(MATCH_WAYS)
    window_days: Annotated[float, Field(ge=0, le=3650)] = 30.0  # repo_window: PRs created this close to the instance's
    problem_threshold: Annotated[float, Field(gt=0, le=1)] = 0.8  # estimated Jaccard of word 5-shingles
    num_perm: Annotated[int, Field(ge=16, le=1024)] = 128
    pr_records: bool = True  # look turns' PR records up in [[pr_records]] for base commit, date and patch
    max_instances: Annotated[int, Field(ge=1, le=10_000_000)] = 2_000_000  # rows read per benchmark


class NearDuplicatesConfig(Table):
    enabled: bool = False
    threshold: Annotated[float, Field(gt=0, le=1)] = 0.8  # estimated Jaccard of the task and of the recent steps + move
    last_steps: Annotated[int, Field(ge=0, le=50)] = 2  # k: history steps (a move and its observation) in the signature
    num_perm: Annotated[int, Field(ge=16, le=1024)] = 64
    max_per_instance: Annotated[int, Field(ge=0, le=1_000_000)] = 0  # 0: no cap
    max_per_repo: Annotated[int, Field(ge=0, le=100_000_000)] = 0  # 0: no cap


class HiddenInfoConfig(Table):
    when_missing: Literal["exclude", "duel"] = "exclude"  # a turn without hidden information


class WarehouseConfig(Table):
    lock_timeout_s: Annotated[float, Field(gt=0, le=86_400)] = 600.0  # how long a writer waits for the warehouse lock


class LocksConfig(Table):
    # how long a command waits for another process's lock on the history index, the export and
    # the Dagster instance's first set-up (at most a day: no wait is endless)
    timeout_s: Annotated[float, Field(gt=0, le=86400)] = 600.0


class CalibrationConfig(Table):
    target_precision: Probability = 0.9


class ReviewConfig(Table):
    """Where the review page (`duel-assets review`) is reached, for links to it from elsewhere."""

    url: Optional[str] = None  # e.g. "http://127.0.0.1:8800": duel_verdict's metadata links to it

    @field_validator("url")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(v)
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            parts, port_ok = None, False
        if (parts is None or not port_ok or parts.scheme not in ("http", "https") or not parts.hostname
                or parts.username is not None or parts.password is not None or parts.query or parts.fragment
                or any(c.isspace() for c in v)):
            raise ValueError('an http:// or https:// address with a host and no user name, password, query or '
                             'fragment (e.g. "http://127.0.0.1:8800")')
        return v.rstrip("/")


class ChainConfig(Table):
    sources: list[SourceSpec] = []
    pr_records: PRRecordsConfig = Field(default_factory=PRRecordsConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    filters: FiltersConfig = Field(default_factory=FiltersConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    judges: JudgeConfig = Field(default_factory=JudgeConfig)
    calls: CallsConfig = Field(default_factory=CallsConfig)
    endpoints: dict[str, EndpointSpec] = {}  # name -> endpoint (names checked in .endpoints)
    roles: RolesConfig = Field(default_factory=RolesConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    buckets: BucketConfig = Field(default_factory=BucketConfig)
    leakage: LeakageConfig = Field(default_factory=LeakageConfig)
    checks: ChecksConfig = Field(default_factory=ChecksConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    decontamination: DecontaminationConfig = Field(default_factory=DecontaminationConfig)
    near_duplicates: NearDuplicatesConfig = Field(default_factory=NearDuplicatesConfig)
    hidden_info: HiddenInfoConfig = Field(default_factory=HiddenInfoConfig)
    warehouse: WarehouseConfig = Field(default_factory=WarehouseConfig)
    locks: LocksConfig = Field(default_factory=LocksConfig)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    metric_weights: dict[MetricName, Annotated[float, Field(ge=0, le=1000)]] = {m: 1.0 for m in METRICS}
    excluded_instance_ids: list[Name] = []
    prices: PriceTables = {}  # model -> prices per 1M tokens
    _origin: str = PrivateAttr(default="built-in defaults")
    _spelling: dict = PrivateAttr(default_factory=dict)  # table -> train_data's name the file used

    @field_validator("pr_records", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        """``[pr_records]`` (a table) or ``[[pr_records]]`` (an array of tables) -> entries."""
        if isinstance(v, list):
            return {"specs": v}
        if isinstance(v, dict):
            return {"specs": [] if v == {"path": ""} else [v]}
        return v

    @field_validator("metric_weights", mode="after")
    @classmethod
    def _every_metric(cls, v: dict) -> dict:
        """Metrics not named keep weight 1.0."""
        return {m: float(v.get(m, 1.0)) for m in METRICS}

    @property
    def origin(self) -> str:
        return self._origin

    @origin.setter
    def origin(self, value: str) -> None:
        self._origin = value

    @property
    def spelling(self) -> dict:
        return self._spelling

    @spelling.setter
    def spelling(self, value: dict) -> None:
        self._spelling = dict(value)
