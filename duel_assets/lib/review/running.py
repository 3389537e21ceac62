"""Where a running review page can be reached, for links from elsewhere (duel_verdict's metadata).

``duel-assets review`` announces itself in ``$DUEL_HOME/review/running.json`` (its address, process
and host) while it serves and removes the file when it stops. :func:`review_base` is the configured
``[review] url`` when there is one, else the address of a page announced in this home whose process
is alive (a page announced from another host is taken at its word unless its address is loopback).
The address never holds the access token of a page served beyond this machine.
"""
from __future__ import annotations

import ipaddress
import os
import socket
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

from ..system.files import read_json, write_json_atomic
from ..system.processes import pid_alive


def running_path(home: Path) -> Path:
    return Path(home) / "review" / "running.json"


def announce(home: Path, url: str, pid: int | None = None) -> Path:
    path = running_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"url": url.rstrip("/"), "pid": pid or os.getpid(), "host": socket.gethostname(),
                             "since": time.time()})
    return path


def withdraw(home: Path, pid: int | None = None) -> None:
    """Remove the announcement when it is this process's (another page may have announced since)."""
    path = running_path(home)
    rec = read_json(path)
    if isinstance(rec, dict) and rec.get("pid") == (pid or os.getpid()) and rec.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def running_url(home: Path) -> str | None:
    rec = read_json(running_path(home))
    if not isinstance(rec, dict) or not isinstance(rec.get("url"), str) or not isinstance(rec.get("pid"), int):
        return None
    if rec.get("host") == socket.gethostname():
        return rec["url"] if pid_alive(rec["pid"]) else None
    return None if is_loopback(urlsplit(rec["url"]).hostname or "") else rec["url"]


def review_base(home: Path, configured: str | None) -> str | None:
    return configured.rstrip("/") if configured else running_url(home)


def partition_url(base: str, key: str) -> str:
    return f"{base.rstrip('/')}/p/{quote(key, safe='')}"


def duel_url(base: str, key: str, turn_id: str) -> str:
    return f"{partition_url(base, key)}/duel?t={quote(turn_id, safe='')}"
