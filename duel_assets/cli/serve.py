"""`duel-assets ui` (dagster dev, with the stand-in when no endpoint is set) and `duel-assets standin`."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from duel_assets.cli.common import ensure_dagster_home
from duel_assets.lib.settings import ConfigError, Paths, mask_url, resolve_endpoint
from duel_assets.lib.settings.preflight import validate_for_work

UI_PORT, STANDIN_PORT = 3000, 8765


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
    from duel_assets.lib.standin import StandinServer

    try:
        return StandinServer(port=wanted if wanted is not None else STANDIN_PORT).start()
    except OSError:
        if wanted is not None:
            raise ConfigError(f"--standin-port {wanted}: already in use on 127.0.0.1; allowed: a free port "
                              "(or leave --standin-port out to have one picked)") from None
        return StandinServer(port=0).start()


def cmd_ui(args) -> int:
    validate_for_work()
    port = pick_port(args.host, args.port, UI_PORT, "--port")
    paths = Paths.from_env().ensure()
    home = ensure_dagster_home(paths)
    env = dict(os.environ, DUEL_HOME=str(paths.home), DAGSTER_HOME=str(home))
    srv = None
    ep = resolve_endpoint()
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
    try:
        return subprocess.call(cmd, env=env, cwd=root)
    except KeyboardInterrupt:
        return 0
    finally:
        if srv:
            srv.stop()


def cmd_standin(args) -> int:
    from duel_assets.lib.standin import serve_forever

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
