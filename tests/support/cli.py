"""Assertions and the environment shared by the CLI integration tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def isolate_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, endpoint: str,
                    region: str, pool: str | None = None) -> None:
    """An environment in which htcpool and boto3 see only the test's moto server: no
    profile, config file or credentials of this machine, and no htcpool settings but
    the endpoint, the region and (if given) the pool."""
    from orchestrator.cli import common

    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "HTCPOOL_CONFIG", "HTCPOOL_POOL",
                "HTCPOOL_TRANSPORT", "HTCPOOL_DEBUG", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("HTCPOOL_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("HTCPOOL_REGION", region)
    if pool is not None:
        monkeypatch.setenv("HTCPOOL_POOL", pool)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    common._CLOUDS.clear()


def one_line_error(result: Any) -> str:
    """The single `htcpool: error:` line of a failed run (and no traceback)."""
    lines = [ln for ln in result.err.splitlines() if ln.startswith("htcpool: error:")]
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    return str(lines[0])
