"""SWE-agent's XML-command style (``<command>...</command>``): real demonstration files from the
SWE-agent repository (fixtures/swe_agent_xml/SOURCES.md) yield one turn for every step that has a
command, and the turn's reference is that command."""
import json

import pytest

from duel_assets.lib.duel.protocol import check_bash_block
from duel_assets.lib.sampling.cutter import cut_turns
from duel_assets.lib.sampling.readers import read_swe_agent
from duel_assets.lib.sampling.sources import iter_rows
from duel_assets.lib.settings import SourceSpec
from duel_assets_tests.conftest import FIXTURES

XML = FIXTURES / "swe_agent_xml"
FILES = sorted(XML.glob("*/*.traj"))


def test_the_real_files_are_there():
    assert [f.parent.name for f in FILES] == ["xml_cursors_window100", "xml_window100", "xml_window100_first"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.parent.name)
def test_every_step_with_a_command_yields_its_turn(path):
    (_, row), = list(iter_rows(SourceSpec(format="swe_agent", path=str(path))))
    steps = [s["action"].strip() for s in json.loads(path.read_text())["trajectory"] if s.get("action", "").strip()]
    assert len(steps) >= 11
    traj = read_swe_agent(row)
    assert traj.protocol == "bash_block" and traj.source_meta["action_style"] == "xml_command"
    assert traj.instance_id == "marshmallow-code__marshmallow-1867" and traj.outcome == "submitted"
    turns, skips = cut_turns(traj)
    assert sum(skips.values()) == 0, skips
    assert [t.step for t in turns] == list(range(len(steps)))
    for turn, command in zip(turns, steps):
        check = check_bash_block(turn.reference["content"])
        assert check.ok and check.action == command
        assert "<command>" not in turn.reference["content"]
        # the history shows the earlier steps in the same form as the reference
        earlier = [m for m in turn.history if m["role"] == "assistant"]
        assert len(earlier) == turn.step and all(check_bash_block(m["content"]).ok for m in earlier)
    assert check_bash_block(turns[-1].reference["content"]).action == "submit"


def _row(assistant: list[dict], trajectory: list[dict] | None = None) -> dict:
    history = [{"role": "system", "content": "Wrap the command in <command></command>."},
               {"role": "user", "content": "ISSUE: x is wrong"}]
    for m in assistant:
        history += [{"role": "assistant", **m}, {"role": "user", "content": "(output)"}]
    return {"history": history, "trajectory": trajectory or [], "_instance_id": "acme__x-1"}


def test_the_last_command_block_counts_and_a_missing_one_comes_from_the_action():
    row = _row([{"content": "Look first.\n<command>\nls\n</command>\nthen\n<command>\n  cat a.py\n</command>"},
                {"content": "Edit it.", "action": "edit 1:1\nx = 1\nend_of_edit\n"},
                {"content": "No command here."}],
               trajectory=[{"action": "cat a.py"}, {"action": "edit 1:1\nx = 1\nend_of_edit\n"}, {"action": "submit"}])
    turns, skips = cut_turns(read_swe_agent(row))
    actions = [check_bash_block(t.reference["content"]).action for t in turns]
    assert actions == ["cat a.py", "edit 1:1\nx = 1\nend_of_edit", "submit"] and not skips
    first = turns[0].reference["content"]
    assert first.startswith("Look first.\n<command>\nls\n</command>\nthen\n\n```bash\ncat a.py\n```")


def test_without_a_command_or_an_action_the_step_is_counted_not_invented():
    row = _row([{"content": "<command>\nls\n</command>"}, {"content": "I forgot the command."}])
    turns, skips = cut_turns(read_swe_agent(row))
    assert [t.step for t in turns] == [0] and skips == {"reference_no_action": 1}
