"""Test-only callback: append every task's templated arguments and status to a JSONL file
named by HTCPOOL_RECORD_FILE."""

from __future__ import annotations

import json
import os
from typing import Any

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "htcpool_record_args"
    CALLBACK_NEEDS_ENABLED = True

    def _record(self, result: Any, status: str) -> None:
        task = result._task
        entry = {
            "host": result._host.get_name(),
            "name": task.get_name(),
            "action": task.action,
            "args": task.args,
            "status": status,
            "msg": result._result.get("msg") if status == "failed" else None,
        }
        with open(os.environ["HTCPOOL_RECORD_FILE"], "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, default=str) + "\n")

    def v2_runner_on_ok(self, result: Any) -> None:
        self._record(result, "ok")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._record(result, "failed")

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._record(result, "skipped")

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._record(result, "failed")
