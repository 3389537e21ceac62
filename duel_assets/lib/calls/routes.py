"""Several endpoints behind one caller: each call goes to the endpoint of its role.

:class:`RoutedCaller` offers what the stage and the calibration use of an :class:`.caller.LLMCaller`
(``session``, ``cache.get_many``, ``run_coroutine``, ``endpoint_id``) over one ``LLMCaller`` per
endpoint; a call goes to the endpoint ``route(role, model)`` names. Each endpoint keeps everything
of its own: its client and extra headers, its limits, its adaptive window and leases in the call
store (keyed by the endpoint), what it refuses, and the identity of the calls bought from it.
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack, asynccontextmanager

from .caller import LLMCaller
from .session import CallSession
from .types import CallRequest, CallResult, CallStats

Route = Callable[[str, str], str]  # (role, model) -> endpoint name


class RoutedCaller:
    def __init__(self, callers: dict[str, LLMCaller], route: Route):
        if not callers:
            raise ValueError("a routed caller needs one endpoint at least")
        self.callers, self.route = callers, route
        self.first = next(iter(callers.values()))
        self.log = self.first.log
        self.cache = RoutedCalls(self)
        # how a run's metadata names its endpoints: their ids (never a secret)
        self.endpoint_id = ", ".join(dict.fromkeys(c.endpoint_id for c in callers.values()))

    def caller_of(self, req: CallRequest) -> LLMCaller:
        return self.callers[self.route(req.role, req.model)]

    def run_coroutine(self, coro):
        return self.first.run_coroutine(coro)

    @asynccontextmanager
    async def session(self, label: str = "llm", total: int = 0):
        """One :class:`.session.CallSession` per endpoint (labelled with its name), behind one
        :class:`RoutedSession`."""
        async with AsyncExitStack() as stack:
            sessions = {}
            for i, (name, caller) in enumerate(self.callers.items()):
                sessions[name] = await stack.enter_async_context(caller.session(f"{label} [{name}]", total if i == 0 else 0))
            yield RoutedSession(self.route, sessions)


class RoutedSession:
    """``await session(request, stats, cached=None)``: the call made by its endpoint's session."""

    def __init__(self, route: Route, sessions: dict[str, CallSession]):
        self.route, self.sessions = route, sessions

    async def __call__(self, req: CallRequest, stats: CallStats, cached: dict | None = None) -> CallResult:
        return await self.sessions[self.route(req.role, req.model)](req, stats, cached)

    def expect(self, n: int, role: str = "", model: str = "") -> None:
        """More calls announced, to the progress count of the endpoint of ``role`` and ``model``."""
        name = self.route(role, model) if role else next(iter(self.sessions))
        self.sessions[name].expect(n)

    def raise_over_budget(self) -> None:
        """Once every call has landed: the budget's refusal, if an endpoint's session met one (one
        budget holds for every endpoint: ``calls.max_usd``)."""
        for s in self.sessions.values():
            s.raise_over_budget()

    def trace_into(self, stats: CallStats, points: int = 60) -> None:
        """The window over time of the busiest endpoint (the one with the most samples)."""
        max(self.sessions.values(), key=lambda s: len(s.trace)).trace_into(stats, points)


class RoutedCalls:
    """The call store as each endpoint sees it, by request."""

    def __init__(self, routed: RoutedCaller):
        self.routed = routed

    def get(self, item: CallRequest) -> dict | None:
        return self.routed.caller_of(item).cache.get(item)

    def get_many(self, items: list[CallRequest]) -> dict[str, dict]:
        """The completed calls among ``items``, by the request's own content key (one query per endpoint)."""
        groups: dict[str, list[CallRequest]] = {}
        for req in items:
            groups.setdefault(self.routed.route(req.role, req.model), []).append(req)
        out: dict[str, dict] = {}
        for name, reqs in groups.items():
            out.update(self.routed.callers[name].cache.get_many(reqs))
        return out
