"""What the dataset card says about trajectory rows."""
from __future__ import annotations

from ..settings import ExportConfig

RULE_TEXT = {
    "replaced_last_move": "the challenger's answer replaced the row's last move (trained)",
    "replaced_same_action": "the challenger's answer replaced a move with the same action (trained)",
    "kept_original_accepted": "the original move stayed, its action differing from the answer's; its turn was accepted (trained)",
    "not_trained_defeat": "the original move stayed; its turn was dueled and not accepted (not trained)",
    "not_dueled": "the original move stayed; its turn was never dueled or is not in the export (not trained)",
}


def trajectory_layout_lines() -> list[str]:
    return [
        "Layout `trajectory`: one row per source trajectory with at least one exported turn. `messages` is every "
        "message of the trajectory as OpenAI chat messages `{role, content, reasoning_content, tool_calls, "
        "tool_call_id, name, train, weight, turn_id}` (tool calls and `tools` as in the `openai` layout: `arguments` "
        "and each tool's `parameters` are JSON strings). `turn_id` names the dueled turn of an assistant message "
        "(null for the others). Rows also carry `traj_id`, `turns`, `buckets`, `prompt_files`, `complete` (false when "
        "the trajectory was rebuilt from its latest turn's history because the whole trajectory was not kept at "
        "sampling time), `truncated`, `trained_messages`, `tokens`, `trained_tokens`, `contamination` and `standin`.",
    ]


def trajectory_target_lines() -> list[str]:
    return [
        "Train on the messages with `train: true`: an assistant message is trained when its turn's bucket is one of "
        "the exported buckets (`defeat` never is); every other message is context. With axolotl's `chat_template` "
        "datasets set `message_field_training: train`. `weight`, when the export writes it, is the duel score / 100 "
        "on trained messages and 0 elsewhere.",
    ]


def trajectory_card_lines(stats: dict, cfg: ExportConfig) -> list[str]:
    rules = stats["rules"]
    total = sum(rules.values())
    share = stats["trained_token_share"]
    lines = [
        "## Trajectory rows", "",
        f"{stats['rows']} rows in {stats['shards']} shards; {stats['complete']} hold the whole source trajectory, "
        f"{stats['rows'] - stats['complete']} were rebuilt from a turn's history; {stats['truncated']} end before the "
        "source trajectory does (" + ("truncated after the last trained message, or after a replaced last move"
                                      if cfg.truncate_after_last_trained else "after a replaced last move") + "). "
        f"Weights: {'duel score / 100 on trained messages' if cfg.weight == 'score' else 'none'}.", "",
        "Which rule each assistant message followed (a winning answer replaces the original move only where the "
        "trajectory stays consistent: the row's last move, or a move whose action is the answer's):", "",
        "| rule | assistant messages | share |", "|---|---:|---:|",
        *[f"| {r}: {RULE_TEXT[r]} | {n} | {n / total:.1%} |" if total else f"| {r}: {RULE_TEXT[r]} | 0 | - |"
          for r, n in rules.items()],
        "",
        f"Trained tokens: {stats['trained_tokens']} of {stats['tokens']} (share {share:.6f}). Tokens are counted "
        "without a model tokenizer: the words and punctuation marks (runs of `\\w` and single other non-space "
        "characters) of each message's content, reasoning and tool calls (name and arguments), every role "
        "included; each row's `tokens` and `trained_tokens` hold its own counts, so the share is "
        "sum(`trained_tokens`) / sum(`tokens`) over the rows.",
    ]
    return lines
