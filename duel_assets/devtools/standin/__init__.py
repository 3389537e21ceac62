"""The offline stand-in: a local OpenAI-compatible server that is NOT a model (see :mod:`.server`)."""
from .provider import FAULT_KINDS, StandinState, body_key
from .replies import NOT_A_MODEL
from .running import StandinServer, serve_forever

__all__ = ["FAULT_KINDS", "NOT_A_MODEL", "StandinServer", "StandinState", "body_key", "serve_forever"]
