"""Fixtures of the Ansible tests; the helpers live in htcpool_testlib."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.ansible import CheckRun, make_check_runner


@pytest.fixture
def check_role(tmp_path: Path) -> Callable[..., CheckRun]:
    return make_check_runner(tmp_path)


@pytest.fixture
def moto_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A local AWS API (moto server on 127.0.0.1), emptied before each test: moto keeps its
    state per process, so servers of earlier tests would otherwise leak resources."""
    from moto.server import ThreadedMotoServer

    from orchestrator.sandbox import moto_fixes

    moto_fixes.apply()
    # AWS managed policies (AmazonSSMManagedInstanceCore) exist in moto only on request.
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"),
                           timeout=30).close()
    yield url
    server.stop()
