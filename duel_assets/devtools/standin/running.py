"""The stand-in as a server: in a background thread (tests, ``duel-assets ui``) or in the
foreground (``duel-assets standin``)."""
from __future__ import annotations

import sys
from http.server import ThreadingHTTPServer
from typing import Any

from .provider import StandinState
from .server import Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # read by listen() at bind time: a burst of 64+ connects must not drop SYNs

    def handle_error(self, request, client_address):
        """A client that resets its connection is one line on stderr, not a traceback."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, TimeoutError)):
            print(f"stand-in: client {client_address[0]}:{client_address[1]} closed the connection "
                  f"({type(exc).__name__})", file=sys.stderr)
            return
        print(f"stand-in: error serving {client_address[0]}:{client_address[1]}: {type(exc).__name__}: {exc}", file=sys.stderr)


class StandinServer:
    """Runs the stand-in in a background thread: ``with StandinServer() as s: s.base_url``."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", **state_kwargs: Any):
        import threading

        self.state = StandinState(**state_kwargs)
        self.httpd = _Server((host, port), Handler)
        self.httpd.state = self.state  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="duel-standin", daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> StandinServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> StandinServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_forever(port: int, **state_kwargs: Any) -> None:
    srv = StandinServer(port=port, **state_kwargs)
    st = srv.state
    limits = f" rpm={st.rpm:g} tpm={st.tpm:g}" if st.rpm or st.tpm else ""
    print(f"duel-assets stand-in (NOT a model) on {srv.base_url}  latency={st.latency_ms}ms "
          f"fault_rate={st.fault_rate}{limits}", flush=True)
    try:
        srv.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.httpd.server_close()
