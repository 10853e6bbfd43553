"""Test-only action: set ansible_facts from its `facts` argument (no host access)."""

from __future__ import annotations

from typing import Any

from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: Any = None, task_vars: Any = None) -> dict[str, Any]:
        return {"changed": False, "ansible_facts": dict(self._task.args.get("facts", {}))}
