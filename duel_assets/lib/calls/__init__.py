"""The LLM call layer: requests, the deployment's flight rules, the call store, the wire format."""
from ..settings import ConfigError, Endpoint
from .caller import LLMCaller
from .errors import RETRYABLE, RateLimitInfo, classify
from .session import CallSession
from .store import CallStore
from .types import CallRequest, CallResult, CallStats, call_key
from .wire import BrokenStream, Garbage, StreamedReply, parse_reply, request_body


def require_endpoint(endpoint: Endpoint | None) -> Endpoint:
    if endpoint is None:
        raise ConfigError(
            "no LLM endpoint configured: set LLM_BASE_URL and LLM_API_KEY (or CHUTES_*/OPENAI_*). "
            "For an offline try, start the stand-in with `duel-assets standin --port 8765` and set "
            "LLM_BASE_URL=http://127.0.0.1:8765/v1 - its replies are not from a model."
        )
    return endpoint


__all__ = ["BrokenStream", "CallRequest", "CallResult", "CallSession", "CallStats", "CallStore", "Garbage", "LLMCaller", "RETRYABLE",
           "RateLimitInfo", "StreamedReply", "call_key", "classify", "parse_reply", "request_body", "require_endpoint"]
