"""`duel-assets ui` (dagster dev, with the stand-in when no endpoint is set) and `duel-assets standin`."""
from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

from duel_assets.cli.common import instance
from duel_assets.lib.settings import ConfigError, Paths, mask_url, resolve_endpoint
from duel_assets.lib.settings.preflight import validate_for_work
from duel_assets.lib.system.processes import end_with_parent, run_own_group

UI_PORT, STANDIN_PORT = 3000, 8765
STOP_GRACE_S = 12.0  # SIGTERM to the Dagster processes, then SIGKILL to what is left


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(host: str, wanted: int | None, default: int, option: str) -> int:
    """``wanted`` when given (an error if it is taken), else ``default`` or, when that is taken, a free one."""
    port = wanted if wanted is not None else default
    if port_free(host, port):
        return port
    if wanted is not None:
        raise ConfigError(f"{option} {wanted}: already in use on {host}; allowed: a free port (or leave {option} "
                          "out to have one picked)")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start_standin(wanted: int | None):
    from duel_assets.devtools.standin import StandinServer

    try:
        return StandinServer(port=wanted if wanted is not None else STANDIN_PORT).start()
    except OSError:
        if wanted is not None:
            raise ConfigError(f"--standin-port {wanted}: already in use on 127.0.0.1; allowed: a free port "
                              "(or leave --standin-port out to have one picked)") from None
        return StandinServer(port=0).start()


def cmd_ui(args) -> int:
    """`dagster dev` (webserver, daemon, code server) in a process group of its own, which ends with
    this command: on SIGTERM, SIGINT or SIGHUP the whole group gets SIGTERM, then SIGKILL what is left
    after ``STOP_GRACE_S``; if this process is killed outright, `dagster dev` gets SIGTERM from the
    kernel (parent-death signal) and stops its own children."""
    if getattr(args, "stop_with_parent", False):
        end_with_parent()  # `make ui`: stop when make is killed outright (SIGTERM it passes on)
    validate_for_work()
    port = pick_port(args.host, args.port, UI_PORT, "--port")
    paths = Paths.from_env().ensure()
    instance(paths).dispose()  # set up the instance; runs whose process is gone are marked failed
    home = paths.dagster_home
    env = dict(os.environ, DUEL_HOME=str(paths.home), DAGSTER_HOME=str(home))
    srv = None
    ep = resolve_endpoint()
    try:
        if ep is None:
            srv = start_standin(args.standin_port)
            env["LLM_BASE_URL"], env["LLM_API_KEY"] = srv.base_url, "standin-ui-key"
            print(f"no LLM endpoint configured: runs will use the OFFLINE STAND-IN on port {srv.port} "
                  f"({srv.base_url}; NOT a model).")
            print("Set LLM_BASE_URL and LLM_API_KEY (or CHUTES_API_KEY) to use a real provider.")
        else:
            print(f"LLM endpoint: {mask_url(ep.base_url)} (from {ep.source})")
        dagster = shutil.which("dagster", path=str(Path(sys.executable).parent)) or "dagster"
        root = Path(__file__).resolve().parents[2]
        cmd = [dagster, "dev", "-w", str(root / "workspace.yaml"), "-h", args.host, "-p", str(port)]
        print(f"Dagster UI on http://{args.host}:{port}  (DAGSTER_HOME={home})", flush=True)
        return run_own_group(cmd, env=env, cwd=root, grace_s=STOP_GRACE_S,
                             on_stop=lambda sig: print(f"{sig}: stopping Dagster (dagster dev, webserver, daemon, "
                                                       "code server)", file=sys.stderr, flush=True))
    finally:
        if srv:
            srv.stop()


def cmd_standin(args) -> int:
    from duel_assets.devtools.standin import serve_forever

    if not port_free("127.0.0.1", args.port):
        raise ConfigError(f"--port {args.port}: already in use on 127.0.0.1; allowed: a free port")
    from duel_assets.cli.calibrate import standin_kwargs

    faults = tuple(args.faults.split(",")) if args.faults else ()
    kwargs = dict(latency_ms=args.latency_ms, fault_rate=args.fault_rate, rpm=args.rpm, tpm=args.tpm,
                  ms_per_prompt_token=args.ms_per_prompt_token, ms_per_completion_token=args.ms_per_completion_token,
                  prefix_cache=not args.no_prefix_cache, modes=tuple(args.mode), batch_delay_s=args.batch_delay_s,
                  batch_error_rate=args.batch_error_rate, batch_expire_rate=args.batch_expire_rate)
    kwargs.update(standin_kwargs(args))  # the judge oracle, with --labels
    if faults:
        kwargs["faults"] = faults
    serve_forever(args.port, **kwargs)
    return 0
