"""Per-user directories (XDG base directories, with their usual fallbacks)."""

from __future__ import annotations

import os
from pathlib import Path


def xdg_dir(var: str, fallback: str) -> Path:
    """$VAR if set, else ~/FALLBACK (for example XDG_CACHE_HOME, ".cache")."""
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / fallback


def user_cache_dir() -> Path:
    """htcpool's cache: the sandbox's base images, the narrowed EC2 model."""
    return xdg_dir("XDG_CACHE_HOME", ".cache") / "htcpool"
