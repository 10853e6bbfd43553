"""Assertions shared by the CLI integration tests."""

from __future__ import annotations

from typing import Any


def one_line_error(result: Any) -> str:
    """The single `htcpool: error:` line of a failed run (and no traceback)."""
    lines = [ln for ln in result.err.splitlines() if ln.startswith("htcpool: error:")]
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    return str(lines[0])
