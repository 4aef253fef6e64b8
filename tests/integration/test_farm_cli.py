"""`wanfarm up` refuses what must not start, before starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.cli import main


def test_up_on_a_public_address_without_keys_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANFARM_API_KEYS", raising=False)
    assert main(["up", "--host", "0.0.0.0", "--data-dir", str(tmp_path)]) == 2
    assert "refusing to serve 0.0.0.0 without API keys" in capsys.readouterr().err


def test_up_with_an_unknown_declared_gpu_names_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["up", "--declare-gpu", "RTX 9999", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown GPU 'RTX 9999'" in err and "RTX 3060" in err


def test_up_with_a_malformed_key_file_says_what_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text('[{"key": "k1", "owner": "alice", "role": "boss"}]')
    assert main(["up", "--api-keys", str(keys), "--data-dir", str(tmp_path)]) == 2
    assert "role must be submit or admin, not 'boss'" in capsys.readouterr().err


def test_submit_to_a_farm_that_is_not_there_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = tmp_path / "job.json"
    settings.write_text('{"model_type": "wan-tiny"}')
    assert main(["submit", str(settings), "--server", "http://127.0.0.1:9"]) == 1
    assert "cannot reach the farm at http://127.0.0.1:9" in capsys.readouterr().err
