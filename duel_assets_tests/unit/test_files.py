"""Files written atomically get the permissions the umask gives, like any other file."""
import os
import stat

import pytest

from duel_assets.lib.system.files import replacing, write_json_atomic, write_text_atomic


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_text_atomic(tmp_path / "a.md", "x")
        write_json_atomic(tmp_path / "sub" / "b.json", {"k": 1})
        with replacing(tmp_path / "c.parquet") as tmp:
            tmp.write_bytes(b"PAR1")
    finally:
        os.umask(old)
    for name in ("a.md", "sub/b.json", "c.parquet"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["a.md", "b.json", "c.parquet"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "r.json"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError):
        with replacing(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["r.json"]
