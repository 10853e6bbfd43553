"""zones, regions, images list; the config/credential/region error paths; pool views' errors
that need no HTCondor output (central manager missing, SSM returning nothing)."""

from __future__ import annotations

import json
from typing import Any

from orchestrator.errors import ExitStatus
from tests.support.cli import one_line_error


def test_zones_table_and_json(aws: Any, cli: Any) -> None:
    r = cli("zones")
    assert r.code == 0, r.err
    assert "us-east-1a" in r.out and "Zone ID" in r.out
    zones = json.loads(cli("zones", "--json").out)
    assert {"name", "id", "state", "region"} <= set(zones[0])
    assert all(z["region"] == "us-east-1" for z in zones)


def test_zones_follow_the_region_flag(aws: Any, cli: Any) -> None:
    zones = json.loads(cli("--region", "eu-west-1", "zones", "--json").out)
    assert zones and all(z["name"].startswith("eu-west-1") for z in zones)


def test_regions_table_and_json(aws: Any, cli: Any) -> None:
    r = cli("regions")
    assert r.code == 0 and "eu-west-1" in r.out and "Endpoint" in r.out
    names = [x["name"] for x in json.loads(cli("regions", "--json").out)]
    assert "us-east-1" in names and names == sorted(names)


def test_images_newest_first_with_versions(aws: Any, cli: Any) -> None:
    r = cli("images", "list")
    assert r.code == 0, r.err
    order = [r.out.index(v) for v in ("20260301-000000", "20260201-000000", "20260101-000000")]
    assert order == sorted(order)
    rows = json.loads(cli("image", "list", "--json").out)
    assert [x["version"] for x in rows] == ["20260301-000000", "20260201-000000",
                                             "20260101-000000"]
    assert rows[0]["id"] == aws.images["20260301-000000"]
    assert json.loads(cli("--pool", "otherpool", "images", "list", "--json").out) == []


def test_no_credentials_is_one_line(aws: Any, cli: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    r = cli("instances", "list")
    assert r.code == ExitStatus.ERROR
    assert "no AWS credentials" in one_line_error(r)


def test_no_region_is_one_line(aws: Any, cli: Any, monkeypatch: Any) -> None:
    for var in ("HTCPOOL_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    r = cli("zones")
    assert r.code != 0 and "no AWS region" in one_line_error(r)


def test_aws_region_variable_is_honoured(aws: Any, cli: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("HTCPOOL_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    zones = json.loads(cli("zones", "--json").out)
    assert zones and all(z["region"] == "eu-west-3" for z in zones)


def test_unknown_profile_is_one_line(aws: Any, cli: Any) -> None:
    r = cli("--profile", "nosuch", "zones")
    assert r.code != 0 and "profile 'nosuch' not found" in one_line_error(r)


def test_debug_shows_the_traceback(aws: Any, cli: Any) -> None:
    import pytest

    from orchestrator.errors import NotFoundError

    with pytest.raises(NotFoundError):
        cli("--debug", "instances", "stop", "i-0123456789abcdef0")


def test_bad_config_value_names_key_and_value(aws: Any, cli: Any, tmp_path: Any) -> None:
    (tmp_path / "htcpool.toml").write_text('[aws]\nretry_mode = "eager"\n')
    r = cli("zones")
    assert r.code == ExitStatus.USAGE
    line = one_line_error(r)
    assert "aws.retry_mode" in line and "'eager'" in line and "htcpool.toml" in line


def test_config_file_supplies_pool(aws: Any, cli: Any, tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("HTCPOOL_POOL")
    (tmp_path / "cfg.toml").write_text('pool = "otherpool"\n')
    rows = json.loads(cli("--config", str(tmp_path / "cfg.toml"), "instances", "list",
                          "--json").out)
    assert [x["id"] for x in rows] == [aws.other_pool]


def test_central_manager_not_found(aws: Any, cli: Any) -> None:
    for command in (("pool", "status"), ("queue",)):
        r = cli("--pool", "otherpool", *command, "--transport", "ssm")
        assert r.code == ExitStatus.NOT_FOUND
        line = one_line_error(r)
        assert "central manager not found" in line and "otherpool" in line


def test_ssm_with_no_output_is_a_clear_error(aws: Any, cli: Any) -> None:
    # moto's SendCommand "succeeds" without running anything: an empty answer must not be
    # shown as an empty pool.
    r = cli("pool", "status", "--transport", "ssm")
    assert r.code == ExitStatus.ERROR
    line = one_line_error(r)
    assert aws.cm in line and "no output" in line
