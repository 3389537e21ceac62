"""The LLM call layer's public names (the implementation lives in :mod:`duel_assets.lib.calls`)."""
from .calls import (
                    CallRequest,
                    CallResult,
                    CallSession,
                    CallStats,
                    CallStore,
                    Garbage,
                    LLMCaller,
                    classify,
                    parse_reply,
                    request_body,
                    require_endpoint,
)

__all__ = ["CallRequest", "CallResult", "CallSession", "CallStats", "CallStore", "Garbage", "LLMCaller", "classify",
           "parse_reply", "request_body", "require_endpoint"]
