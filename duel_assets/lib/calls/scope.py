"""One endpoint's side of a call store.

Callers look calls up by request (or by a request's content key, ``CallRequest.key``); the store
keeps them under the call's identity, content and endpoint (:func:`.types.call_identity`), so a
reply bought from one endpoint (or answered by the offline stand-in) is never served for another.
A request sent with a switch that shapes the reply turned down (the endpoint refuses it:
:mod:`.downgrades`) is a call of its own.
"""
from __future__ import annotations

from typing import Any

from .downgrades import Downgrades, apply, for_request, identity_key
from .types import CallRequest, call_identity
from .wire import request_body


class EndpointCalls:
    def __init__(self, store, endpoint: str):
        self.store = store  # the whole store (every endpoint): the flight rules use it as it is
        self.endpoint = endpoint  # as settings.endpoint_id gives it
        self.downgrades = Downgrades()  # what the endpoint refuses: read at each session's start, and learnt since

    def key(self, content_key: str) -> str:
        return call_identity(self.endpoint, content_key)

    def content_key(self, item: CallRequest | str) -> str:
        """The content key ``item`` is sent under now: its own, or, when the endpoint refuses a
        switch of its body that shapes the reply, that of the body it gets instead."""
        if isinstance(item, str):
            return item
        switches = for_request(self.downgrades.of(item.model), item.params)
        if not switches:
            return item.key
        return identity_key(item.key, apply(request_body(item), switches))

    def identity(self, item: CallRequest | str) -> str:
        return self.key(self.content_key(item))

    def get(self, item: CallRequest | str) -> dict | None:
        return self.store.get(self.identity(item))

    def get_many(self, items: list[CallRequest] | list[str]) -> dict[str, dict]:
        """The completed calls among ``items`` (requests or content keys), by the request's own
        content key (one query)."""
        ids = {self.identity(i): (i if isinstance(i, str) else i.key) for i in items}
        return {ids[k]: v for k, v in self.store.get_many(list(ids)).items()}

    def __getattr__(self, name: str) -> Any:  # count, budget, in_flight, close, ...: the store's own
        return getattr(self.store, name)
