"""`duel-assets publish --repo OWNER/NAME`: push the export folder (card and shards) to a Hugging Face
dataset repository; `--dry-run` lists exactly what would be uploaded."""
from __future__ import annotations

import sys

from duel_assets.lib.settings import Paths, env, load_config, scrub


def add_parser(sub) -> None:
    p = sub.add_parser("publish", help="push the export folder (card and shards) to a Hugging Face dataset repository",
                       description="Push $DUEL_HOME/export (README.md, data/*.parquet, jsonl/*.jsonl) to a Hugging Face "
                                   "dataset repository in one commit, with the token in HF_TOKEN (or "
                                   "HUGGINGFACE_API_KEY). Refused (exit 2) without a token, when the export holds the "
                                   "stand-in's rows (unless --force) or when its gate rejects.")
    p.add_argument("--repo", required=True, metavar="OWNER/NAME", help="the dataset repository (created when missing)")
    p.add_argument("--private", action="store_true", help="create the repository private (an existing one keeps its visibility)")
    p.add_argument("--revision", metavar="BRANCH", help="the branch to commit to (created when missing; default: main)")
    p.add_argument("--dry-run", action="store_true", help="list what would be uploaded and deleted; upload nothing")
    p.add_argument("--force", action="store_true", help="publish rows the offline stand-in answered")
    p.set_defaults(fn=cmd_publish)


def cmd_publish(args) -> int:
    from huggingface_hub.errors import HTTPError as HubHTTPError

    from duel_assets.lib.export.publish import planned, upload

    token = env.hf_token()
    if not token and not args.dry_run:
        print("error: publish: no Hugging Face token: set HF_TOKEN (or HUGGINGFACE_API_KEY) in the environment or .env",
              file=sys.stderr)
        return 2
    paths, cfg = Paths.from_env(), load_config()
    plan = planned(paths, cfg, args.repo, args.revision, args.private, args.force)
    if plan.refusals:
        for line in plan.refusals:
            print(f"error: publish: {line}", file=sys.stderr)
        return 2
    print("\n".join(plan.lines()))
    if args.dry_run:
        print("dry run: nothing was uploaded" + ("" if token else " (a real upload needs HF_TOKEN or HUGGINGFACE_API_KEY)"))
        return 0
    assert token is not None
    try:
        url = upload(paths, plan, token)
    except (HubHTTPError, OSError, ValueError) as e:  # the hub's errors (HTTP, network, a name): one line, no token
        first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        print(f"error: publish: {type(e).__name__}: {scrub(first)[:300]}", file=sys.stderr)
        return 1
    print(f"published: {url}")
    return 0
