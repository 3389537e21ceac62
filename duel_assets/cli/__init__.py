"""`duel-assets`: supervised fine-tuning data for coding agents, made by dueling LLM answers under a
judge panel; the commands below do what the Dagster CLI cannot do in one step.

Runs go to the persistent instance at $DAGSTER_HOME (default $DUEL_HOME/dagster_home), so the UI
shows them; the command exits non-zero when any materialization fails. Every command loads ``.env``
from the working directory first (the environment wins), and every command that starts work
validates the configuration first: a problem stops it with exit 2 and one line per error.
"""
from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import sys

from duel_assets.cli import calibrate, publish, review

DEMO_DESCRIPTION = (
    "Run the whole graph on the bundled samples against the offline stand-in (its answers and verdicts are NOT "
    "from a model), in a home of its own: $DUEL_HOME/demo unless --home is given, with its own prompt files, "
    "warehouse, call store, Dagster instance, report and export. It never reads or writes the partitions of "
    "$DUEL_HOME, $DUEL_WAREHOUSE or $DAGSTER_HOME, and prints where it wrote.")


def _per_file(text: str) -> int:
    n = int(text)
    if not 1 <= n <= 200:
        raise argparse.ArgumentTypeError(f"got {n}; allowed: 1 to 200")
    return n


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"got {n}; allowed: an integer >= 1")
    return n


def _fn(name: str):
    """The command's function, imported only when it runs (keeps `--help` and `config` fast)."""
    def run(args):
        module, attr = name.rsplit(".", 1)
        return getattr(__import__(f"duel_assets.cli.{module}", fromlist=[attr]), attr)(args)
    return run


def _describe(sub) -> None:
    """A command added without its own ``description`` gets its one-line help as one, so that its
    ``--help`` starts with what it does."""
    helps = {a.dest: a.help for a in sub._choices_actions}
    for name, parser in sub.choices.items():
        if not parser.description and helps.get(name):
            parser.description = helps[name][0].upper() + helps[name][1:] + "."


def build_parser() -> argparse.ArgumentParser:
    first = __doc__.split("\n\n")[0].replace("\n", " ")
    p = argparse.ArgumentParser(prog="duel-assets", description=first,
                                epilog="`duel-assets COMMAND --help` says what a command does and lists its options.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    d = sub.add_parser("demo", help="whole graph on the bundled samples against the offline stand-in",
                       description=DEMO_DESCRIPTION)
    d.add_argument("--config", help="chain.toml to use instead of the bundled demo config")
    d.add_argument("--home", metavar="DIR", help="the demo's own home (default: $DUEL_HOME/demo); refused when it holds "
                                                 "prompt files the demo did not write")
    d.set_defaults(fn=_fn("work.cmd_demo"))
    s = sub.add_parser("sample", help="sample N turns into prompt files of <= 200 and register them",
                       description="Sample turns from the configured sources into prompt files of at most 200 turns "
                                   "($DUEL_HOME/prompt/<stem>_<N>_<i>.json) and register each as a partition. No LLM "
                                   "call is made. Exits 3 when it delivers no turn.")
    s.add_argument("--prompts", type=_positive, help="number of turns (default: sampling.prompts)")
    s.add_argument("--per-file", type=_per_file, help="turns per prompt file, 1-200 (default: sampling.turns_per_file)")
    s.add_argument("--stem", default="prompts", help="file name stem: files are <stem>_<N>_<i>.json (default: prompts)")
    s.add_argument("--force", action="store_true", help="resample files that already exist")
    s.set_defaults(fn=_fn("work.cmd_sample"))
    r = sub.add_parser("run", help="register new prompt files and materialize the whole graph",
                       description="Register new prompt files as partitions, materialize the whole graph for each "
                                   "partition (its LLM calls are paid for), then duel_report. Ends with one line per "
                                   "partition (turns dueled, buckets, exclusions, gate); exits 1 when a step fails, 3 "
                                   "when a partition dueled no turn.")
    r.add_argument("--partition", action="append", metavar="KEY",
                   help="partition key (repeatable; default: all); a key with neither a prompt file nor a "
                        "registered partition is refused unless --sample-new is given")
    r.add_argument("--sample-new", action="store_true",
                   help="allow --partition keys that do not exist yet: their turns are sampled from the "
                        "configured sources and all their LLM calls are paid for")
    r.add_argument("--resample", action="store_true",
                   help="tag the runs duel/resample=true: a partition whose prompt file was deleted is sampled again")
    r.add_argument("--parallel", type=_positive, default=2, metavar="N",
                   help="partitions run at once (default: 2): one's start-up and verdicts overlap another's calls; "
                        "their calls share calls.concurrency and the rate limits")
    r.add_argument("--estimate", action="store_true",
                   help="print what the run would cost (as `duel-assets estimate` does) and stop: nothing is sent")
    r.add_argument("--no-report", action="store_true",
                   help="do not materialize duel_report at the end (what the processes of a --parallel run do)")
    r.set_defaults(fn=_fn("run.cmd_run"))
    e = sub.add_parser("estimate", help="what a run would cost: calls, tokens and USD per role, online and batch",
                       description="Print what `duel-assets run` would cost for the partitions it would touch, before "
                                   "anything is sent: calls, prompt / cached / completion tokens and USD at [prices] per "
                                   "role and model, online and at the batch prices. Calls already in the call store "
                                   "cost nothing and are shown as such; completion tokens are the store's observed "
                                   "means for the model, else max_tokens.")
    e.add_argument("--partition", action="append", metavar="KEY",
                   help="partition key (repeatable; default: every registered partition and prompt file)")
    e.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    e.set_defaults(fn=_fn("estimate.cmd_estimate"))
    f = sub.add_parser("forget", help="remove partitions: registration, history, warehouse rows and files",
                       description="Remove partitions: their registration, their histories in the history index, "
                                   "their rows in every warehouse table and their files; then rewrite report.md and "
                                   "the export's card over the partitions that remain.")
    f.add_argument("partition", nargs="+", metavar="KEY", help="partition key(s) to remove")
    f.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    f.set_defaults(fn=_fn("forget.cmd_forget"))
    c = sub.add_parser("config", help="print the resolved configuration and where each value came from "
                                      "(no network, no Dagster instance)",
                       description="Print the resolved configuration and where each value came from (default, "
                                   "chain.toml, the environment or .env), without touching the network or the "
                                   "Dagster instance. Exits 2 when `run` would refuse to start.")
    c.set_defaults(fn=_fn("show.cmd_config"))
    st = sub.add_parser("standin", help="serve the offline stand-in (not a model) on 127.0.0.1",
                        description="Serve the offline stand-in on 127.0.0.1: a deterministic OpenAI-compatible API "
                                    "whose answers and verdicts are NOT from a model, for trying the pipeline, tests "
                                    "and benchmarks.")
    st.add_argument("--port", type=int, default=8765, help="port to listen on (default: 8765)")
    st.add_argument("--latency-ms", type=float, default=0.0, help="reply latency in milliseconds (default: 0)")
    st.add_argument("--fault-rate", type=float, default=0.0, help="share of requests that fail, 0-1 (default: 0)")
    st.add_argument("--faults", help="comma-separated kinds among 429,500,timeout,garbage (default: all)")
    g = st.add_argument_group("provider behaviour")
    g.add_argument("--rpm", type=float, default=0.0,
                   help="requests per minute before 429 with Retry-After and x-ratelimit-* headers (default: 0, no limit)")
    g.add_argument("--tpm", type=float, default=0.0,
                   help="tokens per minute (prompt + max_tokens) before 429 (default: 0, no limit)")
    g.add_argument("--ms-per-prompt-token", type=float, default=0.0, help="extra latency per prompt token (default: 0)")
    g.add_argument("--ms-per-completion-token", type=float, default=0.0, help="extra latency per completion token (default: 0)")
    g.add_argument("--no-prefix-cache", action="store_true", help="report no cached prompt tokens")
    from duel_assets.devtools.standin.modes import MODES

    g.add_argument("--mode", action="append", choices=MODES, default=[], metavar="MODE",
                   help="refuse a request switch or break transfers as real servers do, repeatable: "
                        f"{', '.join(MODES)}")
    bg = st.add_argument_group("batch API (/v1/files, /v1/batches)")
    bg.add_argument("--batch-delay-s", type=float, default=0.0, help="seconds before a batch is done (default: 0)")
    bg.add_argument("--batch-error-rate", type=float, default=0.0,
                    help="share of a batch's requests that error (a 500 in its error file), 0-1 (default: 0)")
    bg.add_argument("--batch-expire-rate", type=float, default=0.0,
                    help="share of a batch's requests left expired (batch_expired; the batch is then expired), 0-1 (default: 0)")
    calibrate.add_standin_args(st)
    st.set_defaults(fn=_fn("serve.cmd_standin"))
    u = sub.add_parser("ui", help="Dagster UI + daemon (dagster dev) with DAGSTER_HOME under DUEL_HOME; "
                                  "the stand-in when no endpoint is set",
                       description="Start the Dagster UI and daemon (dagster dev) on this DUEL_HOME's instance and, "
                                   "when no endpoint is configured, the offline stand-in (said on the terminal).")
    u.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    u.add_argument("--port", type=int, help="UI port (default: 3000, or a free port when 3000 is taken)")
    u.add_argument("--standin-port", type=int,
                   help="stand-in port when no endpoint is set (default: 8765, or a free port when taken)")
    u.add_argument("--stop-with-parent", action="store_true",
                   help="stop (and stop Dagster) when the process that started this one ends, even when it is "
                        "killed outright; `make ui` uses it")
    u.set_defaults(fn=_fn("serve.cmd_ui"))
    calibrate.add_subcommands(sub)
    review.add_parser(sub)
    publish.add_parser(sub)
    k = sub.add_parser("calls", help="list what the call store holds per endpoint and model (calls, stand-in "
                                     "replies, when stored), or remove one endpoint's calls",
                       description="List what the call store holds per endpoint and model, or remove one "
                                   "endpoint's calls. A stored reply is reused only for the endpoint that gave it.")
    k.add_argument("--remove-endpoint", metavar="URL",
                   help="remove every call stored for this endpoint (its base URL, as `duel-assets calls` lists it or "
                        "as configured: credentials are ignored; `unknown` for calls stored before endpoints were "
                        "recorded); the next run pays for them again")
    k.set_defaults(fn=_fn("calls.cmd_calls"))
    b = sub.add_parser("bench", help="run the benchmarks and print ratios",
                       description="Run the benchmarks on this machine (sampler, decontamination and near-duplicates, "
                                   "LLM stage against the stand-in, writes, gate) and print their ratios.")
    b.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    b.add_argument("--only", action="append", metavar="PART",
                   choices=("llm", "panel", "goodput", "pipe", "sampler", "curation", "bootstrap"),
                   help="run only this part (repeatable): llm, panel, goodput, pipe, sampler, curation, bootstrap")
    b.set_defaults(fn=_fn("common.cmd_bench"))
    _describe(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from duel_assets.lib.settings import ConfigError, env

    args = build_parser().parse_args(argv)
    env.apply_environment()
    # SIGTERM stops a command as SIGINT does (clean-up runs, exit 130), also while it waits for a lock
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return int(args.fn(args) or 0)
    except ConfigError as e:
        for line in e.errors:
            print(f"error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stdout = open(os.devnull, "w")
        return 0
    except (OSError, sqlite3.Error) as e:  # a full disk, a storage that cannot be written: one line
        from duel_assets.cli.common import exception_text

        print(f"error: {exception_text(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
