"""Untrusted input, read within bounds.

* :func:`open_regular` opens a file without blocking (a FIFO never waits for a writer) and refuses
  it, before reading a byte, unless it is a regular file (not a symlink to ``/dev/zero``, a FIFO, a
  device, a socket or a folder) no larger than the caller's limit.
* :func:`read_bounded` reads such a file whole; :func:`lines` reads one line at a time, a line
  over its limit coming out as ``None`` (skipped in chunks, never held whole).
* :func:`loads` is ``json.loads`` whose failures are one :class:`BadJSON` with a short reason: not
  JSON, nested deeper than the parser's stack, ``NaN``/``Infinity`` (where refused), or a lone
  surrogate (``"\\ud800"``: no UTF-8 spelling, so no table, file or request body can hold it).
"""
from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

_CHUNK = 1 << 20
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class InputRefused(ValueError):
    """A file refused before or while reading it; the message is one line naming it."""


class BadJSON(ValueError):
    """Text that is not usable JSON; the message is a short reason."""


def kind_of(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: Path | str, what: str, max_bytes: int, limit_name: str = "") -> IO[bytes]:
    """``path`` open for reading, after checking that it is a regular file within ``max_bytes``
    (``limit_name``, when given, is the setting that sets the limit, named in the refusal)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise InputRefused(f"{what} {path} does not exist") from None
    except OSError as e:
        raise InputRefused(f"{what} {path} cannot be opened: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputRefused(f"{what} {path} is {kind_of(st.st_mode)}, not a regular file: refused")
        if st.st_size > max_bytes:
            limit = f"{limit_name} = {max_bytes}" if limit_name else f"the limit of {max_bytes}"
            raise InputRefused(f"{what} {path} is {st.st_size} bytes, over {limit}: refused")
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def read_bounded(path: Path | str, what: str, max_bytes: int, limit_name: str = "") -> bytes:
    """The bytes of a regular file within ``max_bytes`` (see :func:`open_regular`)."""
    with open_regular(path, what, max_bytes, limit_name) as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InputRefused(f"{what} {path} grew over {limit_name or 'the limit'} = {max_bytes} while read: refused")
    return data


def lines(fh: IO[bytes], max_line_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """``(line number, line)`` for each line of ``fh``; a line longer than ``max_line_bytes`` is
    ``None``, its bytes read past in chunks and dropped."""
    n = 0
    while True:
        line = fh.readline(max_line_bytes + 1)
        if not line:
            return
        n += 1
        if len(line) > max_line_bytes and not line.endswith(b"\n"):
            while True:
                rest = fh.readline(_CHUNK)
                if not rest or rest.endswith(b"\n"):
                    break
            yield n, None
            continue
        yield n, line


def _lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return False


def _no_constant(name: str) -> Any:
    raise BadJSON(f"{name} is not a JSON number")


def loads(text: str, allow_nan: bool = True) -> Any:
    """The JSON value of ``text``, or :class:`BadJSON` (see the module docstring)."""
    try:
        value = json.loads(text) if allow_nan else json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise BadJSON(str(e)) from None
    except RecursionError:
        raise BadJSON("nested deeper than the JSON parser's stack allows") from None
    if _SURROGATE_ESCAPE.search(text) and _lone_surrogate(value):
        raise BadJSON("holds a lone surrogate (a \\ud800-\\udfff escape without its pair), which is not text")
    return value


def check_json_file(path: Path | str, what: str, max_bytes: int) -> None:
    """Refuses (:class:`InputRefused`, naming the file and line) a JSON or JSON Lines file that is
    not a regular file within ``max_bytes`` or that :func:`loads` refuses: checked before handing it
    to a reader (DuckDB's) that would crash or fail without saying where."""
    with open_regular(path, what, max_bytes) as fh:
        for n, line in lines(fh, max_bytes):
            if line is None or not line.strip():
                continue
            try:
                text = line.decode("utf-8")
                loads(text)
            except UnicodeDecodeError as e:
                raise InputRefused(f"{what} {path}: line {n} is not UTF-8 (byte {e.start})") from None
            except BadJSON as e:
                if str(e).startswith(("nested", "holds")):
                    raise InputRefused(f"{what} {path}: line {n} {e}") from None
                break  # not JSON Lines: the file as one document, below
        else:
            return
        fh.seek(0)
        try:
            loads(fh.read().decode("utf-8"))
        except UnicodeDecodeError as e:
            raise InputRefused(f"{what} {path} is not UTF-8 (byte {e.start})") from None
        except BadJSON as e:
            raise InputRefused(f"{what} {path} is not JSON: {e}") from None
