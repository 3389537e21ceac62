"""`duel-assets review` as a real process for the tests: started on a free port with a given
environment, its printed address read back, stopped with SIGTERM (bounded waits throughout)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from duel_assets.devtools.ports import free_port

BIN = Path(sys.executable).parent



class ReviewServer:
    def __init__(self, env: dict[str, str], *args: str, log: Path, timeout: float = 60.0):
        self.port = free_port()
        self.log_path = log
        self._log = open(log, "w")
        self.proc = subprocess.Popen([str(BIN / "duel-assets"), "review", "--port", str(self.port), *args],
                                     env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        self.url = f"http://127.0.0.1:{self.port}"  # the tests listen on loopback or on every interface
        while time.monotonic() < deadline:
            text = log.read_text()
            m = re.search(r"review page on (\S+)", text)
            if m and self._answers(self.url):
                self.printed_url, self.printed = m.group(1), text
                t = re.search(r"[?&]token=([^&\s]+)", m.group(1))
                self.token = t.group(1) if t else None
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"duel-assets review exited {self.proc.returncode}:\n{text[-3000:]}")
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"duel-assets review did not answer within {timeout} s:\n{log.read_text()[-3000:]}")

    def _answers(self, url: str) -> bool:
        try:
            urllib.request.urlopen(url, timeout=5).close()
        except urllib.error.HTTPError:
            return True  # it answered (401 without the token, say)
        except OSError:
            return False
        return True

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> ReviewServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def get(url: str, headers: dict | None = None, data: bytes | None = None, method: str | None = None):
    """(status, headers, body text) of one request; redirects are not followed."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with opener.open(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode("utf-8", "replace")
