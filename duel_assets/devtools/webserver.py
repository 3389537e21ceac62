"""A client of the Dagster webserver's GraphQL API, as the benchmarks and tests drive the UI's own
endpoint (launching runs and backfills, reading statuses)."""
from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable


class GraphQLError(RuntimeError):
    pass


class Webserver:
    def __init__(self, url: str, on_timeout: Callable[[], str] | None = None):
        self.url = url.rstrip("/")
        self.on_timeout = on_timeout  # extra text for a timeout (e.g. the tail of the server's log)

    def gql(self, query: str, variables: dict | None = None) -> dict:
        req = urllib.request.Request(f"{self.url}/graphql", method="POST", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"query": query, "variables": variables or {}}).encode())
        with urllib.request.urlopen(req, timeout=60) as r:
            out = json.loads(r.read())
        if "errors" in out:
            raise GraphQLError(f"GraphQL: {out['errors']}")
        return out["data"]

    def up(self) -> bool:
        """The webserver answers GraphQL."""
        try:
            self.gql("query { version }")
            return True
        except (OSError, GraphQLError):
            return False

    def wait(self, what: str, fn: Callable, timeout: float = 300, every: float = 2.0):
        """``fn()``'s first truthy value, polled every ``every`` seconds; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            value = fn()
            if value:
                return value
            if time.monotonic() > deadline:
                extra = self.on_timeout() if self.on_timeout else ""
                raise AssertionError(f"timed out waiting for {what}" + (f"\n{extra}" if extra else ""))
            time.sleep(every)
