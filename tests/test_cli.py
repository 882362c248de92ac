"""The command line as a user meets it: help, verbs, and one clear error for bad input."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from sxtquant import io
from sxtquant.cli import VERBS, main
from tests.conftest import assert_user_error


def test_help_lists_every_verb(run_cli):
    result = run_cli("--help")
    assert result.returncode == 0
    for verb in VERBS:
        assert verb in result.stdout


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([verb, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: sxtquant {verb}" in out
    assert "--quiet" in out and "--debug" in out


def test_console_script_and_module_agree(run_cli):
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    script = shutil.which("sxtquant") or str(Path(sys.executable).with_name("sxtquant"))
    proc = subprocess.run([script, "--version"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert proc.stdout.strip() == run_cli("--version").stdout.strip()


def test_info_reports_voxel_size(run_cli, tmp_path):
    path = io.write_volume(tmp_path / "cell.rec", np.ones((3, 8, 9), np.float32), (9.8, 9.8, 9.8))
    result = run_cli("info", path)
    assert result.returncode == 0, result.stderr
    assert "3 x 8 x 9" in result.stdout
    assert "9.8 x 9.8 x 9.8 nm" in result.stdout


def _bad_inputs(tmp_path):
    """One file per class of bad input, with the words the message must contain."""
    cases = {}
    cases["missing"] = (tmp_path / "absent.mrc", "no such file")
    corrupt = tmp_path / "corrupt.mrc"
    corrupt.write_bytes(b"\x01not an mrc file" * 7)
    cases["corrupt"] = (corrupt, "corrupt.mrc")
    truncated = io.write_volume(tmp_path / "short.tif", np.ones((4, 32, 32), np.float32))
    truncated.write_bytes(truncated.read_bytes()[:2000])
    cases["truncated"] = (truncated, "short.tif")
    with h5py.File(tmp_path / "four.h5", "w") as f:
        f["data"] = np.zeros((2, 2, 4, 4), np.float32)
    cases["dimensionality"] = (tmp_path / "four.h5", "no 2D or 3D dataset")
    nan = np.ones((3, 8, 8), np.float32)
    nan[1, 2, 3] = np.nan
    cases["nan"] = (io.write_volume(tmp_path / "nan.mrc", nan, 10.0), "NaN")
    inf = np.ones((3, 8, 8), np.float32)
    inf[0, 0, 0] = -np.inf
    cases["inf"] = (io.write_volume(tmp_path / "inf.tif", inf, 10.0), "infinite")
    with h5py.File(tmp_path / "empty.h5", "w") as f:
        f["data"] = np.zeros((0, 8, 8), np.float32)
    cases["empty"] = (tmp_path / "empty.h5", "empty")
    (tmp_path / "table.xlsx").write_text("x")
    cases["unknown type"] = (tmp_path / "table.xlsx", "unknown file type")
    return cases


@pytest.mark.parametrize(
    "case",
    ["missing", "corrupt", "truncated", "dimensionality", "nan", "inf", "empty", "unknown type"],
)
def test_bad_input_is_one_clear_error(run_cli, tmp_path, case):
    path, fragment = _bad_inputs(tmp_path)[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run_cli("info", path)
    assert_user_error(result, str(path.name), fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_debug_shows_the_traceback(run_cli, tmp_path):
    result = run_cli("info", tmp_path / "absent.mrc", "--debug")
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert "sxtquant: error:" in result.stderr


def test_unknown_verb_and_option_value(run_cli):
    assert_user_error(run_cli("segmnet"), "invalid choice")
    assert_user_error(run_cli("info"), "required")
