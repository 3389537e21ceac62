"""Endpoints per role: ``[endpoints.<name>]`` and ``[roles]`` of chain.toml, resolved against the
environment.

The endpoint of the environment (LLM_*, then CHUTES_*, then OPENAI_*: :func:`.env.resolve_endpoint`)
is called ``default``; a role that names no endpoint uses it, and ``[endpoints.default]`` replaces
it. Each other endpoint has its URL in chain.toml (``base_url``) or in a variable (``base_url_env``)
and its key only ever in a variable (``api_key_env``): chain.toml holds no secret.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from . import env
from .base import ConfigError
from .calls_model import CallsConfig, EndpointSpec
from .model import ChainConfig

DEFAULT = "default"  # the environment's endpoint
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_HEADER = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")  # an HTTP token
_RESERVED = {"authorization", "content-type", "content-length", "host"}  # the client's own


def route(cfg: ChainConfig, role: str, model: str) -> str:
    """The endpoint name a call of ``role`` (king, challenger, judge) with ``model`` goes to."""
    r = cfg.roles
    if role == "judge":
        name = r.judges.get(model) or r.judge
    else:
        name = getattr(r, role, "") if role in ("king", "challenger") else ""
    return name or DEFAULT


def role_routes(cfg: ChainConfig) -> dict[str, str]:
    """Every role of the chain (``king``, ``challenger``, ``judge <model>``) -> its endpoint name."""
    out = {"king": route(cfg, "king", cfg.generation.model), "challenger": route(cfg, "challenger", cfg.generation.model)}
    out.update({f"judge {m}": route(cfg, "judge", m) for m in cfg.judges.models})
    return out


def roles_of(cfg: ChainConfig, name: str) -> list[str]:
    """The roles that call endpoint ``name``."""
    return [r for r, n in role_routes(cfg).items() if n == name]


def used(cfg: ChainConfig, judges_only: bool = False) -> list[str]:
    """The endpoint names the chain's roles (or only its judges) use, in order of first use."""
    return list(dict.fromkeys(n for r, n in role_routes(cfg).items() if not judges_only or r.startswith("judge ")))


def is_routed(cfg: ChainConfig) -> bool:
    """Whether any role leaves the environment's endpoint (or chain.toml redefines it)."""
    return used(cfg) != [DEFAULT] or DEFAULT in cfg.endpoints


def cross_checks(cfg: ChainConfig, k) -> list[str]:
    """Rules over [endpoints] and [roles], each named as written (``k`` spells a key path)."""
    out = []
    for name, spec in cfg.endpoints.items():
        if not _NAME.fullmatch(name):
            out.append(f"{k('endpoints', name)}: got the name {name!r}; allowed: letters, digits, '_', '.', '-'")
        for h, value in spec.headers.items():
            if not _HEADER.fullmatch(h) or h.lower() in _RESERVED or "\n" in value or "\r" in value:
                out.append(f"{k('endpoints', name, 'headers', h)}: not a header this endpoint may add; allowed: an "
                           "HTTP header name other than Authorization, Content-Type, Content-Length and Host, "
                           "with a value on one line (the key goes in api_key_env)")
        if bool(spec.base_url.strip()) == bool(spec.base_url_env):
            out.append(f"{k('endpoints', name)}: got {'both' if spec.base_url_env else 'neither'} of base_url and "
                       "base_url_env; allowed: exactly one (the URL, or the name of the variable holding it)")
    known = [DEFAULT, *cfg.endpoints]
    refs: list[tuple[tuple[str, ...], str]] = [(("roles", r), getattr(cfg.roles, r)) for r in ("king", "challenger", "judge")]
    refs += [(("roles", "judges", m), n) for m, n in cfg.roles.judges.items()]
    for loc, name in refs:
        if name and name not in known:
            out.append(f"{k(*loc)}: got {name!r}, which is no endpoint; allowed: {', '.join(map(repr, known))} "
                       "(an [endpoints.<name>] table, or default: the environment's endpoint)")
    for model in cfg.roles.judges:
        if model not in cfg.judges.models:
            out.append(f"{k('roles', 'judges', model)}: got an endpoint for a model that is not a judge; "
                       f"allowed: the models of {k('judges', 'models')} ({', '.join(cfg.judges.models)})")
    return out


def spec_endpoint(name: str, spec: EndpointSpec, environ: Mapping[str, str] | None = None) -> env.Endpoint:
    """The endpoint ``[endpoints.<name>]`` describes, its variables read now; a :class:`ConfigError`
    naming the table and the variable when the URL's variable is unset."""
    url = spec.base_url.strip()
    source = f"[endpoints.{name}]"
    if spec.base_url_env:
        url = env.getenv(spec.base_url_env, environ) or ""
        source = f"[endpoints.{name}] {spec.base_url_env}"
        if not url:
            raise ConfigError(f"endpoints.{name}.base_url_env: the variable {spec.base_url_env} is unset or empty; "
                              "allowed: a variable holding the endpoint's base URL")
    key = env.getenv(spec.api_key_env, environ) if spec.api_key_env else None
    return env.Endpoint.of(url, key or "", source, spec.headers)


def limits(cfg: ChainConfig, name: str) -> CallsConfig:
    """``[calls]`` with the endpoint's own limits (concurrency, requests and tokens per minute) in place."""
    spec = cfg.endpoints.get(name)
    if spec is None:
        return cfg.calls
    own = {f: getattr(spec, f) for f in ("concurrency", "requests_per_minute", "tokens_per_minute")
           if getattr(spec, f) is not None}
    return cfg.calls.model_copy(update=own) if own else cfg.calls


@dataclass(frozen=True)
class Described:
    """One endpoint as ``duel-assets config`` shows it: never a key, never a header's value."""

    name: str
    url: str  # without credentials, or why there is none
    key: str  # "VAR (set, n characters, not shown)" / "unset" / "none"
    headers: str
    limits: str
    roles: list[str]


def describe(cfg: ChainConfig, environ: Mapping[str, str] | None = None) -> list[Described]:
    """Each endpoint the chain defines or uses, with the roles that use it."""
    names = list(dict.fromkeys([*used(cfg), *cfg.endpoints]))
    out = []
    for name in names:
        roles = roles_of(cfg, name)
        spec = cfg.endpoints.get(name)
        calls = limits(cfg, name)
        lim = (f"concurrency {calls.concurrency}, rpm {calls.requests_per_minute:g}, tpm {calls.tokens_per_minute:g}"
               + ("" if spec is not None and spec.concurrency is not None else " (from [calls])"))
        if spec is None:
            ev = env.endpoint_vars(environ)
            url = env.mask_url(ev.base_url) + f" (from {ev.source})" if ev else "none: set LLM_BASE_URL and LLM_API_KEY"
            out.append(Described(name, url, _key(ev.api_key_var if ev else None, environ), "none", lim, roles))
            continue
        if spec.base_url_env:
            value = env.getenv(spec.base_url_env, environ)
            url = f"{env.mask_url(value)} (from {spec.base_url_env})" if value else f"{spec.base_url_env} is unset"
        else:
            url = env.mask_url(spec.base_url)
        headers = ", ".join(f"{h}: ***" for h in spec.headers) or "none"
        out.append(Described(name, url, _key(spec.api_key_env or None, environ), headers, lim, roles))
    return out


def _key(var: str | None, environ: Mapping[str, str] | None) -> str:
    if not var:
        return "none (no Authorization sent)"
    value = env.getenv(var, environ)
    return f"{var} (set, {len(value)} characters, not shown)" if value else f"{var} (unset)"


def resolve_used(cfg: ChainConfig, environ: Mapping[str, str] | None = None,
                 judges_only: bool = False) -> dict[str, env.Endpoint | None]:
    """Each endpoint the chain's roles use, resolved now (None: the environment's, when no variable
    sets one); a :class:`ConfigError` for a named one whose URL variable is unset."""
    out: dict[str, env.Endpoint | None] = {}
    for name in used(cfg, judges_only):
        spec = cfg.endpoints.get(name)
        out[name] = env.resolve_endpoint(environ) if spec is None else spec_endpoint(name, spec, environ)
    return out
