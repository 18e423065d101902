"""Output folders (issue 13 item 6): --overwrite replaces only what led-hf wrote; a killed run's staging is
cleaned by the next one; two writers of one output are serialised by a lock with a clear message."""

from __future__ import annotations

import os
import stat

import pytest

from led_hf.atomic import atomic_directory, output_lock
from led_hf.cli.main import main
from led_hf.errors import LedError


def test_overwrite_refuses_a_folder_that_led_hf_did_not_write(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(LedError, match="not an output of led-hf"):
        with atomic_directory(target, overwrite=True):
            pass
    assert (target / "keep.txt").read_text(encoding="utf-8") == "mine"


def test_overwrite_refuses_a_file(tmp_path):
    target = tmp_path / "out"
    target.write_text("data", encoding="utf-8")
    with pytest.raises(LedError, match="is a file"):
        with atomic_directory(target, overwrite=True):
            pass
    assert target.read_text(encoding="utf-8") == "data"


def test_overwrite_replaces_a_folder_with_its_manifest(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "manifest.json").write_text("{}", encoding="utf-8")
    with atomic_directory(target, overwrite=True) as staging:
        (staging / "manifest.json").write_text('{"new": 1}', encoding="utf-8")
    assert (target / "manifest.json").read_text(encoding="utf-8") == '{"new": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no lock, staging or trash left


def test_prepare_overwrite_keeps_an_unrelated_folder(capsys, tmp_path, beir_dir):
    """`led prepare --overwrite` deleted the user's keep.txt."""
    target = tmp_path / "mine"
    target.mkdir()
    (target / "keep.txt").write_text("x", encoding="utf-8")
    argv = ["prepare", "--format", "beir", "--input", str(beir_dir), "--output", str(target), "--quiet"]
    assert main([*argv, "--overwrite"]) == 1
    assert "not an output of led-hf" in capsys.readouterr().err and (target / "keep.txt").exists()


def test_staging_has_normal_permissions_and_stale_staging_is_removed(tmp_path):
    target = tmp_path / "out"
    stale = tmp_path / ".out.tmp-killed"
    stale.mkdir()
    (stale / "half.bin").write_bytes(b"\0" * 10)
    (tmp_path / ".out.old-123").mkdir()
    umask = os.umask(0o022)
    try:
        with atomic_directory(target) as staging:
            assert stat.S_IMODE(staging.stat().st_mode) == 0o755  # mkdtemp alone gives 0700
            assert not stale.exists()
    finally:
        os.umask(umask)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o755


def test_a_second_writer_is_refused_with_one_line(tmp_path):
    target = tmp_path / "enc" / "shard-00000-of-00001"
    with output_lock(target):
        with pytest.raises(LedError, match="another process is writing .*shard-00000-of-00001"):
            with atomic_directory(target):
                pass
    with atomic_directory(target) as staging:  # free again once the first writer is done
        (staging / "ids.txt").write_text("", encoding="utf-8")
    assert (target / "ids.txt").exists()


def test_a_second_process_is_refused(tmp_path):
    """The lock is a real flock: a child process holding it blocks this one."""
    import subprocess
    import sys
    import time

    target = tmp_path / "out"
    ready = tmp_path / "ready"
    code = (
        "import sys, time, pathlib; from led_hf.atomic import output_lock\n"
        f"with output_lock(pathlib.Path({str(target)!r})):\n"
        f"    pathlib.Path({str(ready)!r}).touch(); time.sleep(30)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        deadline = time.time() + 30
        while not ready.exists() and time.time() < deadline:
            time.sleep(0.05)
        with pytest.raises(LedError, match="another process is writing"):
            with atomic_directory(target):
                pass
    finally:
        child.kill()
        child.wait()
