"""`duel-assets review`: the local review page over the warehouse, whose labels feed `calibrate`."""
from __future__ import annotations

import os
import pwd
import re
import secrets
import signal
import socket
import sys
from pathlib import Path

from duel_assets.lib.settings import ConfigError, Paths, load_config

REVIEW_PORT = 8800
LOCK_WAIT_S = 15.0  # a page load waits this long for a run's write to the local warehouse file


def _bind(host: str, wanted: int | None) -> socket.socket:
    """A listening socket: ``wanted`` (an error when taken), else :data:`REVIEW_PORT`, else a free port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for port in ([wanted] if wanted is not None else [REVIEW_PORT, 0]):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            sock.close()
            if wanted is not None:
                raise ConfigError(f"--port {wanted}: cannot listen on {host}: {e.strerror}; allowed: a free port "
                                  "(or leave --port out to have one picked)") from None
            if port == 0:
                raise ConfigError(f"--host {host}: cannot listen there: {e.strerror}") from None
            continue
        sock.listen(64)
        return sock
    raise AssertionError("unreachable")


def reviewer_name(given: str | None) -> str:
    """``--reviewer``, else the account's login name."""
    if given is None:
        try:
            given = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:  # a uid without an account (some containers)
            given = "reviewer"
    name = given.strip()
    if not name or len(name) > 100 or any(c in name for c in "\n\r\t"):
        raise ConfigError(f"--reviewer: got {given!r}; allowed: a name of 1 to 100 characters on one line")
    return name


def labels_path(home: Path, reviewer: str, given: str | None) -> Path:
    """``--labels``, else ``$DUEL_HOME/review/labels/<reviewer>.jsonl`` (the name made safe for a
    calibration key: `calibrate` names the set after the file)."""
    if given:
        path = Path(given).expanduser().resolve()
        if path.exists() and not path.is_file():
            raise ConfigError(f"--labels {given}: not a regular file; allowed: a labels file to append to")
        return path
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", reviewer).strip("._") or "reviewer"
    return home / "review" / "labels" / f"{safe}.jsonl"


def cmd_review(args) -> int:
    import uvicorn

    from duel_assets.lib.review import running
    from duel_assets.lib.review.labels import LabelsFile
    from duel_assets.lib.review.reading import Reader
    from duel_assets.lib.warehouse import LOCAL, Warehouse, redact
    from duel_assets.review_app.app import Review, build_app
    from duel_assets.review_app.security import loopback_hosts

    if args.demo:
        from duel_assets.cli.work import demo_config, demo_environment

        os.environ.update(demo_environment(Paths.from_env().home / "demo", demo_config()))
    cfg = load_config()
    paths = Paths.from_env()
    wh = Warehouse.from_env(paths.home, lock_timeout_s=LOCK_WAIT_S)
    if wh.dialect == LOCAL and not Path(wh.target.location).exists():
        hint = "run `make demo` first" if args.demo else "run `duel-assets run` first (or `make demo`, then `make review-demo`)"
        print(f"error: no warehouse at {wh.target.location}: {hint}", file=sys.stderr)
        return 2
    reviewer = reviewer_name(args.reviewer)
    labels = LabelsFile(labels_path(paths.home, reviewer, args.labels))
    remote = not running.is_loopback(args.host)
    sock = _bind(args.host, args.port)
    port = sock.getsockname()[1]
    token = secrets.token_urlsafe(24) if remote else None
    shown_host = f"[{args.host}]" if ":" in args.host else args.host
    base = f"http://{socket.getfqdn() if args.host in ('0.0.0.0', '::') else shown_host}:{port}"
    review = Review(reader=Reader(wh), paths=paths, cfg=cfg, labels=labels, reviewer=reviewer, near=args.near)
    app = build_app(review, token=token, hosts=None if remote else loopback_hosts(port))
    print(f"review page on {base}/" + (f"?token={token}" if token else ""))
    if token:
        print(f"  listening on {args.host} (beyond this machine): every request needs the token above; open that "
              "address once per browser")
    print(f"  warehouse   {redact(wh.label)}")
    print(f"  labels      {labels.path} ({labels.count()} so far), as {reviewer}")
    print(f"  calibrate:  duel-assets calibrate {labels.path}")
    print("  Ctrl-C stops it", flush=True)
    running.announce(paths.home, base)
    # uvicorn stops on SIGTERM / SIGINT and then raises the signal again: a plain exit, so that the
    # announcement is withdrawn on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        running.withdraw(paths.home)
        wh.close()
        sock.close()
    return 0


def _points(text: str) -> float:
    import argparse

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: a number of points from 0 to 50") from None
    if not 0 <= v <= 50:
        raise argparse.ArgumentTypeError(f"got {text}; allowed: a number of points from 0 to 50")
    return v


def add_parser(sub) -> None:
    r = sub.add_parser(
        "review", help="a local web page to look at duels side by side and label them for `calibrate`",
        description="Serve a local web page over the warehouse: partitions with their gate, a partition's turns "
                    "with filters (judges disagree, near a threshold, leak suspects, parse failures, excluded), and "
                    "each duel side by side with the diff, the judges and the verdict. Labels (A / B / tie, "
                    "optionally for one metric) are appended to a labelled-duel file `duel-assets calibrate` reads "
                    "as it is. Reads the warehouse only; writes the labels file and, while it runs, "
                    "$DUEL_HOME/review/running.json (its address, for the link in duel_verdict's metadata).")
    r.add_argument("--host", default="127.0.0.1",
                   help="interface to listen on (default: 127.0.0.1); any other address serves beyond this machine "
                        "and then every request needs the access token printed at start")
    r.add_argument("--port", type=int, help=f"port (default: {REVIEW_PORT}, or a free port when it is taken)")
    r.add_argument("--labels", metavar="FILE",
                   help="labels file to append to (default: $DUEL_HOME/review/labels/<reviewer>.jsonl)")
    r.add_argument("--reviewer", metavar="NAME", help="who labels, recorded with every label (default: your login name)")
    r.add_argument("--near", type=_points, default=5.0, metavar="POINTS",
                   help="a score within this many points of a bucket threshold is 'near a threshold' (default: 5)")
    r.add_argument("--demo", action="store_true", help="review the demo's partitions ($DUEL_HOME/demo, as `duel-assets "
                                                       "demo` wrote them)")
    r.set_defaults(fn=cmd_review)
