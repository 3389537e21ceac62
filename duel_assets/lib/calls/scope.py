"""One endpoint's side of a call store.

Callers look calls up by a request's content key (``CallRequest.key``); the store keeps them under
the call's identity, content and endpoint (:func:`.types.call_identity`), so a reply bought from one
endpoint (or answered by the offline stand-in) is never served for another.
"""
from __future__ import annotations

from typing import Any

from .types import call_identity


class EndpointCalls:
    def __init__(self, store, endpoint: str):
        self.store = store  # the whole store (every endpoint): the flight rules use it as it is
        self.endpoint = endpoint  # as settings.endpoint_id gives it

    def key(self, content_key: str) -> str:
        return call_identity(self.endpoint, content_key)

    def get(self, content_key: str) -> dict | None:
        return self.store.get(self.key(content_key))

    def get_many(self, content_keys: list[str]) -> dict[str, dict]:
        """The completed calls among ``content_keys``, by content key (one query)."""
        ids = {self.key(k): k for k in content_keys}
        return {ids[k]: v for k, v in self.store.get_many(list(ids)).items()}

    def __getattr__(self, name: str) -> Any:  # count, budget, in_flight, close, ...: the store's own
        return getattr(self.store, name)
