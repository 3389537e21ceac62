"""The building blocks of the `chain.toml` models: a strict table and the bounded value types."""
from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Probability = Annotated[float, Field(gt=0, lt=1)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Name = Annotated[str, Field(pattern=r"\S")]  # non-empty, not only blanks
Temperature = Annotated[float, Field(ge=0, le=2)]
Score = Annotated[float, Field(ge=0, le=100)]
# upper bounds: values beyond these are typing mistakes (or would exhaust the machine or the budget)
Chars = Annotated[int, Field(ge=1, le=10_000_000)]
Tokens = Annotated[int, Field(ge=1, le=1_000_000)]
Seconds = Annotated[float, Field(ge=0, le=3600)]
USDPerMTokens = Annotated[float, Field(ge=0, le=100_000)]


EnvName = Annotated[str, Field(pattern=r"^([A-Za-z_][A-Za-z0-9_]*)?$")]  # a variable's name, or ""


class Table(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
