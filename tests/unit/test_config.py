"""Config: file < environment < flags; clear messages naming the bad key or value."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import Config, load_config
from orchestrator.errors import ConfigError


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def test_defaults_without_a_file() -> None:
    config = load_config(environ={})
    assert config == Config()
    assert config.pool == "htcpool" and config.region is None and config.source is None
    assert config.aws.retry_mode == "standard" and config.condor.transport == "auto"
    assert config.worker_instance_profile == "htcpool-htcpool-instance"


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    (tmp_path / "htcpool.toml").write_text(
        'pool = "filepool"\nregion = "eu-west-1"\nprofile = "fileprof"\n'
        '[condor]\ntransport = "ssh"\nssh_host = "cm.example"\n')
    config = load_config(environ={})
    assert (config.pool, config.region, config.profile) == ("filepool", "eu-west-1", "fileprof")
    assert config.source and config.source.endswith("htcpool.toml")
    env = {"HTCPOOL_REGION": "us-west-2", "HTCPOOL_TRANSPORT": "ssm"}
    config = load_config(environ=env)
    assert config.region == "us-west-2" and config.pool == "filepool"
    assert config.condor.transport == "ssm" and config.condor.ssh_host == "cm.example"
    config = load_config(environ=env, overrides={"region": "ap-south-1", "pool": None,
                                                 "transport": "local"})
    assert config.region == "ap-south-1" and config.pool == "filepool"
    assert config.condor.transport == "local"


def test_xdg_file_is_used_when_no_local_file(tmp_path: Path) -> None:
    path = tmp_path / "xdg" / "htcpool" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text('pool = "xdgpool"\n')
    assert load_config(environ={}).pool == "xdgpool"
    (tmp_path / "htcpool.toml").write_text('pool = "localpool"\n')
    assert load_config(environ={}).pool == "localpool"


def test_explicit_file_via_environment(tmp_path: Path) -> None:
    (tmp_path / "other.toml").write_text('pool = "envfile"\n')
    assert load_config(environ={"HTCPOOL_CONFIG": str(tmp_path / "other.toml")}).pool == "envfile"


@pytest.mark.parametrize(("text", "expected"), [
    ('colour = "blue"\n', "unknown key 'colour'"),
    ('[aws]\nretries = 3\n', "unknown key 'aws.retries'"),
    ('[aws]\nretry_mode = "eager"\n', "bad value for 'aws.retry_mode' = 'eager'"),
    ('[aws]\nmax_attempts = 0\n', "bad value for 'aws.max_attempts' = 0"),
    ('[condor]\ntransport = "carrier-pigeon"\n', "'condor.transport' = 'carrier-pigeon'"),
    ('pool = "no spaces please"\n', "bad value for 'pool' = 'no spaces please'"),
    ('endpoint_url = "127.0.0.1:4580"\n', "'endpoint_url' = '127.0.0.1:4580'"),
    ('[worker]\nsubnets = "subnet-1"\n', "'worker.subnets' = 'subnet-1'"),
    ('pool = \n', "not valid TOML"),
])
def test_bad_files_name_the_key_and_value(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "htcpool.toml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(environ={})
    message = str(err.value)
    assert expected in message and "htcpool.toml" in message and "\n" not in message


def test_bad_flag_value_is_reported_as_settings() -> None:
    with pytest.raises(ConfigError, match=r"'condor\.transport' = 'pigeon'"):
        load_config(environ={}, overrides={"transport": "pigeon"})


def test_missing_explicit_file() -> None:
    with pytest.raises(ConfigError, match=r"config file /nonexistent\.toml not found"):
        load_config("/nonexistent.toml", environ={})
