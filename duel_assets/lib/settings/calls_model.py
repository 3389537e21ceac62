"""`chain.toml`'s tables about calls: `[calls]`, `[endpoints.<name>]`, `[roles]` and `[prices]`."""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal, Optional

from pydantic import AfterValidator, Field

from .fields import EnvName, Fraction, Name, Seconds, Table, USDPerMTokens


class CallsConfig(Table):
    concurrency: Annotated[int, Field(ge=1, le=1024)] = 16
    requests_per_minute: Annotated[float, Field(ge=0, le=1_000_000)] = 0.0  # 0 = unlimited
    tokens_per_minute: Annotated[float, Field(ge=0, le=1_000_000_000)] = 0.0  # estimated prompt tokens; 0 = unlimited
    retry_budget: Annotated[int, Field(ge=1, le=50)] = 6  # attempts per call, first one included
    backoff_base_s: Annotated[float, Field(ge=0, le=600)] = 1.0
    backoff_max_s: Seconds = 60.0
    # connecting, and each silence of a streamed reply; doubled after a timeout, up to 4x
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 120.0
    deadline_s: Annotated[float, Field(gt=0, le=86_400)] = 900.0  # one call, first attempt to last: then it fails
    max_failure_rate: Fraction = 0.5  # above this the step fails (completed calls stay cached)
    stream: bool = True  # stream replies: timeout_s then bounds the silence between chunks, not a reply's length
    adaptive: bool = True  # halve the deployment's window on 429, grow it back as calls succeed
    # the deployment's hard budget in USD at [prices], counted in the call store over every run; none when unset
    max_usd: Optional[Annotated[float, Field(gt=0, le=100_000_000)]] = None
    # "batch": the roles of batch_roles go through the provider's batch API (files + batches), at batch prices
    mode: Literal["online", "batch"] = "online"
    batch_roles: Annotated[list[Literal["king", "challenger", "judge"]], Field(min_length=1)] = ["king", "challenger", "judge"]
    batch_retry: Literal["online", "batch"] = "online"  # how errored and expired batch requests are asked again
    batch_poll_s: Annotated[float, Field(ge=0.01, le=3600)] = 30.0  # between two looks at a batch in flight


class EndpointSpec(Table):
    """``[endpoints.<name>]``: an OpenAI-compatible endpoint some roles use. Its URL is given (``base_url``)
    or named (``base_url_env``); its key is only ever named (``api_key_env``; "" sends none). Limits left
    out are those of ``[calls]``."""

    base_url: str = ""
    base_url_env: EnvName = ""
    api_key_env: EnvName = ""
    headers: dict[str, str] = {}  # extra headers sent with each request
    concurrency: Optional[Annotated[int, Field(ge=1, le=1024)]] = None
    requests_per_minute: Optional[Annotated[float, Field(ge=0, le=1_000_000)]] = None
    tokens_per_minute: Optional[Annotated[float, Field(ge=0, le=1_000_000_000)]] = None


class RolesConfig(Table):
    """Which endpoint each role calls (a name of ``[endpoints]``); "" (or ``"default"``) is the
    endpoint of the environment (LLM_*, CHUTES_*, OPENAI_*)."""

    king: str = ""
    challenger: str = ""
    judge: str = ""  # every judge not named in ``judges``
    judges: dict[Name, str] = {}  # judge model -> endpoint


class Price(Table):
    """USD per 1M tokens."""

    prompt: USDPerMTokens = 0.0
    completion: USDPerMTokens = 0.0
    cached_prompt: Optional[USDPerMTokens] = None
    # through the provider's batch API (calls.mode = "batch"); absent: the batch cost is not estimated
    batch_prompt: Optional[USDPerMTokens] = None
    batch_completion: Optional[USDPerMTokens] = None
    batch_cached_prompt: Optional[USDPerMTokens] = None  # default: batch_prompt


def _price_tables(prices: dict[str, Price]) -> dict[str, dict[str, float]]:
    return {model: p.model_dump(exclude_none=True) for model, p in prices.items()}


if TYPE_CHECKING:  # what the field holds once validated
    PriceTables = dict[str, dict[str, float]]
else:  # validated as Price tables, kept as plain dicts
    PriceTables = Annotated[dict[str, Price], AfterValidator(_price_tables)]
