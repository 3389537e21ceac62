"""The environment: the one module of ``duel_assets.lib`` that reads ``os.environ``.

The `DuelSettings` resource and the command line call it; everything else receives paths, the
endpoint and tokens as values. ``.env`` in the working directory is loaded by every command and by
the code location (the environment wins over it).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .base import ConfigError
from .secrets import call_store_kind, endpoint_id, hidden_values, redact, split_userinfo

CHUTES_BASE_URL = "https://llm.chutes.ai/v1"  # Chutes' OpenAI-compatible API
_FAMILIES = ("LLM", "CHUTES", "OPENAI")

_from_dotenv: dict[str, str] = {}  # variable -> the .env file this process took it from
_aliased: dict[str, str] = {}  # variable -> the variable it was copied from


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def variables() -> Mapping[str, str]:
    """The process environment, for code that hands a whole set of variables on (the warehouse's
    target and cloud credentials); everything else asks for one variable with :func:`getenv`."""
    return os.environ


def getenv(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The variable's value; None when unset or empty."""
    return _env(environ).get(name) or None


def load_dotenv(path: Path | str = ".env") -> dict[str, str]:
    """Add the variables of ``path`` that the environment does not set; returns what was added."""
    from dotenv import dotenv_values

    p = Path(path)
    if not p.is_file():
        return {}
    added = {}
    for name, value in dotenv_values(p).items():
        if value is None or os.environ.get(name):
            continue
        os.environ[name] = value
        added[name] = value
        _from_dotenv[name] = str(p.resolve())
    return added


def apply_environment(dotenv: Path | str = ".env") -> dict[str, str]:
    """What every command does first: load ``.env``, then read train_data's ``HUGGINGFACE_API_KEY``
    as ``HF_TOKEN`` when that is unset (the hub libraries read HF_TOKEN themselves)."""
    added = load_dotenv(dotenv)
    if not os.environ.get("HF_TOKEN") and os.environ.get("HUGGINGFACE_API_KEY"):
        os.environ["HF_TOKEN"] = os.environ["HUGGINGFACE_API_KEY"]
        _aliased["HF_TOKEN"] = "HUGGINGFACE_API_KEY"
    return added


def dotenv_files() -> dict[str, list[str]]:
    """The .env files this process loaded, with the names it took from each."""
    out: dict[str, list[str]] = {}
    for name, f in _from_dotenv.items():
        out.setdefault(f, []).append(name)
    return out


def origin(name: str, environ: Mapping[str, str] | None = None) -> str:
    """Where a variable's value came from: "environment", ".env", "HUGGINGFACE_API_KEY (.env)", or "unset"."""
    if not getenv(name, environ):
        return "unset"
    if environ is None and name in _aliased:
        return f"{_aliased[name]} ({origin(_aliased[name])})"
    return ".env" if environ is None and name in _from_dotenv else "environment"


# ---------------------------------------------------------------- endpoint


@dataclass(frozen=True)
class Endpoint:
    base_url: str  # without user info (see ``of``)
    api_key: str = field(repr=False)  # never printed
    source: str  # the variable that chose it, e.g. "LLM_BASE_URL"
    basic_auth: tuple[str, str] | None = field(default=None, repr=False)  # the URL's user info, never printed
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # extra headers of each request

    @classmethod
    def of(cls, url: str, api_key: str, source: str, headers: Mapping[str, str] | None = None) -> Endpoint:
        """The endpoint of a base URL as configured: ``user:password@`` in it is taken out of the
        URL and kept as credentials (sent as HTTP basic auth when there is no API key)."""
        bare, userinfo = split_userinfo(url.strip())
        return cls(base_url=bare.rstrip("/"), api_key=api_key, source=source, basic_auth=userinfo,
                   headers=tuple((headers or {}).items()))

    @property
    def id(self) -> str:
        """How the endpoint is stored and shown (:func:`.secrets.endpoint_id`): never a secret."""
        return endpoint_id(self.base_url)


@dataclass(frozen=True)
class EndpointVars:
    """Which variables make the endpoint (what the resource wraps in ``EnvVar``)."""

    base_url: str
    base_url_var: str | None  # None: the URL is Chutes' default (only CHUTES_API_KEY is set)
    api_key_var: str | None
    source: str


def endpoint_vars(environ: Mapping[str, str] | None = None) -> EndpointVars | None:
    """The first family with a base URL set wins: LLM_*, then CHUTES_*, then OPENAI_*; with none,
    ``CHUTES_API_KEY`` alone selects Chutes' default URL."""
    for fam in _FAMILIES:
        url = getenv(f"{fam}_BASE_URL", environ)
        if url:
            key_var = f"{fam}_API_KEY" if getenv(f"{fam}_API_KEY", environ) else None
            return EndpointVars(url.rstrip("/"), f"{fam}_BASE_URL", key_var, f"{fam}_BASE_URL")
    if getenv("CHUTES_API_KEY", environ):
        return EndpointVars(CHUTES_BASE_URL, None, "CHUTES_API_KEY", "CHUTES_API_KEY (Chutes' default URL)")
    return None


def resolve_endpoint(environ: Mapping[str, str] | None = None) -> Endpoint | None:
    ev = endpoint_vars(environ)
    if ev is None:
        return None
    key = getenv(ev.api_key_var, environ) if ev.api_key_var else None
    return Endpoint.of(ev.base_url, key or "", ev.source)


def mask_url(url: str) -> str:
    """A URL or connection string without credentials: user info, query values and conninfo
    passwords become ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if not parts.scheme or not parts.netloc:  # a path, a conninfo, ducklake:postgres:...
        return redact(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "&".join(f"{q.split('=', 1)[0]}=***" if "=" in q else q for q in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _url_secrets(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    out = [v for v in (parts.password, parts.username) if v]
    out += [q.split("=", 1)[1] for q in parts.query.split("&") if "=" in q and q.split("=", 1)[1]]
    return out + hidden_values(url)


# variables whose value may hold a password (a URL's user info, a conninfo's password=)
CONNECTION_VARIABLES = ("DUEL_WAREHOUSE", "DUEL_CALL_CACHE")


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values that must never be written anywhere (used to scrub error text): keys and tokens, and
    the credentials inside the endpoint URLs, ``DUEL_WAREHOUSE`` and ``DUEL_CALL_CACHE``."""
    names = [f"{fam}_API_KEY" for fam in _FAMILIES] + ["HF_TOKEN", "HUGGINGFACE_API_KEY"]
    out = [getenv(n, environ) for n in names]
    for fam in _FAMILIES:
        out += _url_secrets(getenv(f"{fam}_BASE_URL", environ) or "")
    for name in CONNECTION_VARIABLES:
        out += hidden_values(getenv(name, environ))
    return sorted({s for s in out if s and len(s) >= 4}, key=len, reverse=True)


def scrub(text: str, secrets: list[str] | None = None) -> str:
    for s in secrets if secrets is not None else secret_values():
        text = text.replace(s, "***")
    return text


def hf_token(environ: Mapping[str, str] | None = None) -> str | None:
    """The hub token itself (HF_TOKEN, else HUGGINGFACE_API_KEY), for the code that opens hub files."""
    var = hf_token_var(environ)
    return getenv(var, environ) if var else None


def hf_token_var(environ: Mapping[str, str] | None = None) -> str | None:
    """The variable holding the hub token: HF_TOKEN, else HUGGINGFACE_API_KEY."""
    return next((n for n in ("HF_TOKEN", "HUGGINGFACE_API_KEY") if getenv(n, environ)), None)


# ---------------------------------------------------------------- paths and modes


def duel_mode(environ: Mapping[str, str] | None = None) -> int:
    raw = (getenv("DUEL_MODE", environ) or "2").strip()
    if raw not in ("1", "2"):
        raise ConfigError(f"DUEL_MODE: got {raw!r}; allowed: 1 (challenger vs the dataset's reference) "
                          "or 2 (challenger vs king)")
    return int(raw)


def duel_home(environ: Mapping[str, str] | None = None) -> Path:
    return Path(getenv("DUEL_HOME", environ) or "./.duel").expanduser().resolve()


def warehouse_url(environ: Mapping[str, str] | None = None) -> str | None:
    """``$DUEL_WAREHOUSE``: a DuckDB path or ``md:<db>`` (MotherDuck); None: the file in DUEL_HOME."""
    return getenv("DUEL_WAREHOUSE", environ)


def call_cache_url(environ: Mapping[str, str] | None = None) -> str | None:
    """``$DUEL_CALL_CACHE``: PostgreSQL (a ``postgresql://`` URL or a libpq keyword conninfo: one
    call store for every worker) or a SQLite file; None: ``cache/llm_calls.sqlite`` in DUEL_HOME.
    Anything else is a :class:`ConfigError` (never taken as a file name)."""
    value = getenv("DUEL_CALL_CACHE", environ)
    if value is not None:
        call_store_kind(value)
    return value


def dagster_home(environ: Mapping[str, str] | None = None) -> Path | None:
    v = getenv("DAGSTER_HOME", environ)
    return Path(v).expanduser().resolve() if v else None


def progress(environ: Mapping[str, str] | None = None) -> bool:
    return getenv("DUEL_PROGRESS", environ) == "1"


def config_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """``$DUEL_CONFIG``, else ``./chain.toml`` when it exists, else None (built-in defaults)."""
    explicit = getenv("DUEL_CONFIG", environ)
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise ConfigError(f"DUEL_CONFIG: got {explicit!r}; allowed: the path of an existing chain.toml")
        return p.resolve()
    p = Path("chain.toml")
    return p.resolve() if p.is_file() else None
