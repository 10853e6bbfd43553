"""Test-only connection that executes nothing: every remote command fails.

Check-mode runs of the roles use it so that no module ever touches the machine
running the tests; the record callback still sees each task's templated arguments."""

from __future__ import annotations

import re
from typing import Any

from ansible.plugins.connection import ConnectionBase

DOCUMENTATION = """
name: htcpool_null
short_description: execute nothing (tests only)
description: Every command fails without running; files are neither sent nor fetched.
author: htcpool
options: {}
"""


class Connection(ConnectionBase):
    transport = "htcpool_null"
    has_pipelining = True

    def _connect(self) -> Connection:
        self._connected = True
        return self

    def exec_command(self, cmd: str, in_data: Any = None,
                     sudoable: bool = True) -> tuple[int, bytes, bytes]:
        # Answer Ansible's "make a temporary directory" probe so tasks reach their module
        # (and fail there) instead of marking the host unreachable.
        match = re.search(r"echo (ansible-tmp-[\w.-]+)=", cmd)
        if match:
            name = match.group(1)
            return 0, f"{name}=/nonexistent/htcpool-null/{name}\n".encode(), b""
        return 1, b"", b"htcpool_null: nothing is executed in tests"

    def put_file(self, in_path: str, out_path: str) -> None:
        return None

    def fetch_file(self, in_path: str, out_path: str) -> None:
        return None

    def close(self) -> None:
        self._connected = False
