"""URLs and connection strings without their secrets, and what a value names.

* :func:`endpoint_id`: an LLM endpoint as it is stored and shown: the base URL normalised (scheme
  and host lower-case, the default port dropped, no trailing slash), never its user info or query;
* :func:`split_userinfo`: a URL without its user info, and that user info (the credentials);
* :func:`redact`: any text with passwords and tokens masked (URL user info, libpq ``key=value``
  pairs, query values);
* :func:`hidden_values`: the secret values inside a URL or conninfo, to scrub from error text;
* :func:`call_store_kind`: what ``DUEL_CALL_CACHE`` names (PostgreSQL or a SQLite file), or a
  :class:`ConfigError` for a value that is neither.
"""
from __future__ import annotations

import re
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from .base import ConfigError

DEFAULT_PORTS = {"http": 80, "https": 443}
_SCHEME = re.compile(r"\A([A-Za-z][A-Za-z0-9+.-]*)://")
_SECRET_NAMES = r"password|passwd|pwd|sslpassword|motherduck_token|token|secret|api_key|apikey|access_key|key"
# a libpq value: single-quoted (backslash escapes inside) or a run of non-blanks
_VALUE = r"'(?:[^'\\]|\\.)*'|(?:[^\s'\\]|\\.)+"
_SECRET_KV = re.compile(rf"(?i)(?<![A-Za-z0-9_])({_SECRET_NAMES})(\s*=\s*)({_VALUE})")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/\s?#]*)@")
_PAIR = re.compile(rf"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*({_VALUE})\s*")
# the keywords libpq accepts in a conninfo string
LIBPQ_KEYWORDS = frozenset("""
host hostaddr port dbname user password passfile require_auth channel_binding connect_timeout client_encoding
options application_name fallback_application_name keepalives keepalives_idle keepalives_interval keepalives_count
tcp_user_timeout replication gssencmode sslmode sslnegotiation requiressl sslcompression sslcert sslkey sslkeylogfile
sslpassword sslcertmode sslrootcert sslcrl sslcrldir sslsni requirepeer ssl_min_protocol_version
ssl_max_protocol_version krbsrvname gsslib gssdelegation service target_session_attrs load_balance_hosts
min_protocol_version max_protocol_version
""".split())


def _split(url: str) -> SplitResult | None:
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        return None
    return parts


def _host(parts: SplitResult) -> str:
    host = parts.hostname or ""
    return f"[{host}]" if ":" in host else host


def split_userinfo(url: str) -> tuple[str, tuple[str, str] | None]:
    """(the URL without ``user:password@``, (user, password) percent-decoded, or None)."""
    parts = _split(url)
    if parts is None or "@" not in parts.netloc:
        return url, None
    userinfo, hostport = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=hostport)), (unquote(user), unquote(password))


def endpoint_id(url: str) -> str:
    """The endpoint as configured, normalised: ``scheme://host[:port]/path``, scheme and host
    lower-case, the scheme's default port and a trailing slash dropped; never user info, query or
    fragment (where credentials hide). What the call store records and what commands print."""
    parts = _split(url)
    if parts is None or not parts.scheme or not parts.hostname:
        return redact(url.strip().rstrip("/"))
    scheme = parts.scheme.lower()
    port = parts.port
    netloc = _host(parts) + (f":{port}" if port is not None and port != DEFAULT_PORTS.get(scheme) else "")
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))


def redact(text: str) -> str:
    """``text`` with secrets masked: URL user info (``user:***@``, or ``***@`` when there is no
    password: the user may be the key), and the values of ``password=``, ``token=``, ``key=`` and
    the like, in conninfo strings and URL queries alike."""
    def userinfo(m: re.Match) -> str:
        user, sep, _ = m.group(2).partition(":")
        return f"{m.group(1)}{user}:***@" if sep and user else f"{m.group(1)}***@"

    masked = _SECRET_KV.sub(lambda m: f"{m.group(1)}{m.group(2)}***", str(text))
    return _USERINFO.sub(userinfo, masked)


def _unquote_libpq(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "'":
        value = value[1:-1]
    return re.sub(r"\\(.)", r"\1", value)


def hidden_values(text: str | None) -> list[str]:
    """The secrets inside a URL or conninfo (as written and decoded): user info, and the values
    :func:`redact` masks."""
    if not text:
        return []
    out: list[str] = []
    for m in _USERINFO.finditer(text):
        user, _, password = m.group(2).partition(":")
        out += [password, unquote(password)] if password else [user, unquote(user)]
    for m in _SECRET_KV.finditer(text):
        raw = m.group(3)
        out += [raw, _unquote_libpq(raw), unquote(raw.split("&", 1)[0])]
    return [s for s in dict.fromkeys(out) if s]


def parse_conninfo(text: str) -> dict[str, str] | None:
    """A libpq keyword conninfo (``host=db dbname=duel password='a b'``) as a dict, or None when
    ``text`` is not one (a pair is malformed or a keyword unknown to libpq)."""
    pos, out = 0, {}
    while pos < len(text):
        m = _PAIR.match(text, pos)
        if m is None or m.group(1) not in LIBPQ_KEYWORDS:
            return None
        out[m.group(1)] = _unquote_libpq(m.group(2))
        pos = m.end()
    return out or None


def call_store_kind(value: str, name: str = "DUEL_CALL_CACHE") -> str:
    """``"postgres"`` (a ``postgresql://`` URL or a libpq keyword conninfo) or ``"sqlite"`` (a file
    path); anything else (another URL scheme, a ``key=value`` string libpq would not take) is a
    :class:`ConfigError` that shows the value without its secrets."""
    text = value.strip()
    allowed = ("allowed: a postgresql:// URL, a libpq keyword conninfo (host=... dbname=... user=...), "
               "or the path of a SQLite file (no '=' in it)")
    scheme = _SCHEME.match(text)
    if scheme:
        if scheme.group(1).lower() in ("postgresql", "postgres"):
            return "postgres"
        raise ConfigError(f"{name}: got a {scheme.group(1)}:// URL ({redact(text)}); {allowed}")
    if "=" in text:
        if parse_conninfo(text) is not None:
            return "postgres"
        raise ConfigError(f"{name}: got {redact(text)!r}, which is not a libpq conninfo (a keyword libpq does "
                          f"not know, or a malformed pair); {allowed}")
    if not text:
        raise ConfigError(f"{name}: got an empty value; {allowed}")
    return "sqlite"
