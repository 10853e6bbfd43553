"""Where things are: the repository, its virtualenv's tools."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HTCPOOL = str(REPO / ".venv" / "bin" / "htcpool")
