"""The roles' templates rendered with Ansible's templar for every supported platform:
repository sources, the security baseline, central manager and worker configuration,
and the first-boot units."""

from __future__ import annotations

import re

import pytest

from tests.support.ansible import (
    OFFICIAL,
    PLATFORMS,
    condor_config,
    render_string,
    render_template,
    role_vars,
)

DEB = ["debian12", "debian13", "ubuntu2204", "ubuntu2404"]
ALL = sorted(PLATFORMS)
AUTHZ = ("READ", "WRITE", "DAEMON", "NEGOTIATOR", "ADMINISTRATOR", "CONFIG")


def entries(value: str) -> list[str]:
    return [e for e in re.split(r"[\s,]+", value.strip()) if e]


def security(platform: str, **overrides: object) -> tuple[str, dict[str, str]]:
    text = render_template("htcondor_common", "10-htcpool-security.conf.j2",
                           role_vars(platform, overrides))
    return text, condor_config(text)


def resolve(knobs: dict[str, str], name: str) -> str:
    """Expand $(HTCPOOL_...) references to knobs of the same file (one level is enough)."""
    value = knobs[name]
    return re.sub(r"\$\((HTCPOOL_[A-Z_]+)\)", lambda m: knobs.get(m.group(1), m.group(0)), value)


# --- repository sources -----------------------------------------------------------------

@pytest.mark.parametrize("platform", DEB)
def test_apt_source_is_the_official_signed_repository(platform: str) -> None:
    facts = PLATFORMS[platform]
    text = render_template("htcondor_common", "htcondor.sources.j2", role_vars(platform))
    lines = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line
                 and not line.startswith("#"))
    flavour = facts["distribution"].lower()
    assert lines["Types"] == "deb"
    assert lines["URIs"] == f"{OFFICIAL}/{flavour}/24.x"
    assert lines["Suites"] == facts["distribution_release"]
    assert lines["Components"] == "main"
    assert lines["Signed-By"] == "/etc/apt/keyrings/htcondor.asc"


def test_apt_source_for_the_sandbox_repository() -> None:
    text = render_template("htcondor_common", "htcondor.sources.j2", role_vars("debian13", {
        "htcondor_common_apt_repository_url": "http://198.18.0.1:4580/apt/",
        "htcondor_common_apt_suite": "trixie",
        "htcondor_common_apt_components": ["main"],
    }))
    assert "URIs: http://198.18.0.1:4580/apt/\n" in text
    assert "Suites: trixie\n" in text


@pytest.mark.parametrize(("platform", "rpm"), [
    ("rocky9", "24.x/htcondor-release-current.el9.noarch.rpm"),
    ("alma9", "24.x/htcondor-release-current.el9.noarch.rpm"),
    ("rhel9", "24.x/htcondor-release-current.el9.noarch.rpm"),
    ("al2023", "24.x/htcondor-release-current.amzn2023.noarch.rpm"),
])
def test_release_rpm_urls(platform: str, rpm: str) -> None:
    variables = role_vars(platform)
    assert render_string("{{ htcondor_common_rpm_release_url }}", variables) == f"{OFFICIAL}/{rpm}"
    assert render_string("{{ htcondor_common_rpm_key_url }}", variables) == \
        f"{OFFICIAL}/keys/HTCondor-24.x-Key"


# --- security baseline ------------------------------------------------------------------

@pytest.mark.parametrize("platform", ALL)
def test_security_baseline(platform: str) -> None:
    text, knobs = security(platform)
    assert "use security:recommended_v9_0" in text.splitlines()
    for kind in ("AUTHENTICATION", "ENCRYPTION", "INTEGRITY"):
        assert knobs[f"SEC_DEFAULT_{kind}"] == "REQUIRED"
        assert knobs[f"SEC_READ_{kind}"] in ("REQUIRED", "OPTIONAL")
    methods = entries(knobs["SEC_DEFAULT_AUTHENTICATION_METHODS"])
    assert methods[0] == "IDTOKENS"
    assert not {"ANONYMOUS", "CLAIMTOBE", "PASSWORD"} & set(methods)
    assert "ANONYMOUS" not in knobs["SEC_CLIENT_AUTHENTICATION_METHODS"]
    assert knobs["TRUST_DOMAIN"] == "htcpool"
    assert knobs["SEC_TOKEN_SYSTEM_DIRECTORY"] == "/etc/condor/tokens.d"


@pytest.mark.parametrize("anonymous_read", [False, True])
def test_no_authorization_is_open_to_everyone(anonymous_read: bool) -> None:
    text, knobs = security("debian13", htcondor_common_anonymous_read=anonymous_read)
    assert not re.search(r"^\s*ALLOW_WRITE\s*=\s*\*\s*$", text, re.M)
    for level in AUTHZ:
        value = entries(resolve(knobs, f"ALLOW_{level}"))
        assert value, level
        if level == "READ" and anonymous_read:
            assert value == ["*"]
            continue
        assert "*" not in value, f"ALLOW_{level} = {value}"
        for identity in value:
            assert re.fullmatch(r"(\*|[a-z_]+)@\$\((TRUST_DOMAIN|UID_DOMAIN)\)", identity), identity
    assert entries(knobs["ALLOW_NEGOTIATOR"]) == ["condor@$(TRUST_DOMAIN)"]
    if not anonymous_read:
        assert knobs["SEC_READ_AUTHENTICATION"] == "REQUIRED"


def test_extra_identities_are_added_not_replacing() -> None:
    _, knobs = security("debian13", htcondor_common_allow_extra={"READ": ["monitor@htcpool"]})
    assert entries(knobs["ALLOW_READ"])[-1] == "monitor@htcpool"
    assert "condor@$(TRUST_DOMAIN)" in entries(knobs["ALLOW_READ"])


def test_rendering_is_stable() -> None:
    """Same input, same bytes: a second converge must not report a change."""
    first, _ = security("rocky9")
    for _ in range(5):
        assert security("rocky9")[0] == first


@pytest.mark.parametrize(("value", "expected"), [(True, "true"), (False, "false")])
def test_kernel_tuning_is_a_variable(value: bool, expected: str) -> None:
    _, knobs = security("debian13", htcondor_common_enable_kernel_tuning=value)
    assert knobs["ENABLE_KERNEL_TUNING"] == expected


# --- central manager --------------------------------------------------------------------

def central_manager(**overrides: object) -> tuple[str, dict[str, str]]:
    variables = role_vars("al2023", {"private_dns_name": "ip-10-0-0-4.ec2.internal", **overrides})
    text = render_template("htcondor_master", "condor_config.local.j2", variables)
    return text, condor_config(text)


def test_central_manager_daemons_and_negotiation() -> None:
    text, knobs = central_manager(htcondor_master_negotiator_interval=10,
                                  htcondor_master_negotiator_min_interval=1,
                                  htcondor_master_negotiator_cycle_delay=2)
    assert entries(knobs["DAEMON_LIST"]) == ["MASTER", "COLLECTOR", "NEGOTIATOR", "SCHEDD"]
    assert knobs["CONDOR_HOST"] == "ip-10-0-0-4.ec2.internal"
    assert knobs["NEGOTIATOR_INTERVAL"] == "10"
    assert knobs["NEGOTIATOR_MIN_INTERVAL"] == "1"
    assert knobs["NEGOTIATOR_CYCLE_DELAY"] == "2"
    assert "SLOT_TYPE_1" not in knobs
    schedd_write = entries(knobs["SCHEDD.ALLOW_WRITE"])
    assert "*" not in schedd_write and "*@$(UID_DOMAIN)" in schedd_write
    assert not re.search(r"ALLOW_WRITE\s*=\s*\*\s*$", text, re.M)


def test_central_manager_defaults_match_htcondor() -> None:
    _, knobs = central_manager()
    assert (knobs["NEGOTIATOR_INTERVAL"], knobs["NEGOTIATOR_CYCLE_DELAY"]) == ("60", "20")


def test_one_node_pool_runs_a_partitionable_startd() -> None:
    _, knobs = central_manager(htcondor_master_run_startd=True)
    assert entries(knobs["DAEMON_LIST"])[-1] == "STARTD"
    assert knobs["SLOT_TYPE_1_PARTITIONABLE"] == "TRUE"


# --- worker -----------------------------------------------------------------------------

def worker(**overrides: object) -> tuple[str, dict[str, str]]:
    text = render_template("htcondor_worker", "condor_config.local.j2",
                           role_vars("ubuntu2404", overrides))
    return text, condor_config(text)


def test_worker_is_a_partitionable_startd_friendly_to_draining() -> None:
    _, knobs = worker()
    assert entries(knobs["DAEMON_LIST"]) == ["MASTER", "STARTD"]
    assert knobs["NUM_SLOTS_TYPE_1"] == "1"
    assert knobs["SLOT_TYPE_1_PARTITIONABLE"] == "TRUE"
    assert knobs["PREEMPT"] == "FALSE" and knobs["SUSPEND"] == "FALSE"
    assert int(knobs["MAXJOBRETIREMENTTIME"]) > 0
    assert knobs["RUNBENCHMARKS"] == "FALSE"
    assert "STARTD_NOCLAIM_SHUTDOWN" not in knobs
    # Pool membership lives in the first-boot file, so the image serves any pool.
    assert "CONDOR_HOST" not in knobs


def test_worker_noclaim_shutdown_is_optional() -> None:
    _, knobs = worker(htcondor_worker_noclaim_shutdown=900)
    assert knobs["STARTD_NOCLAIM_SHUTDOWN"] == "900"


def test_worker_static_slots_when_not_partitionable() -> None:
    _, knobs = worker(htcondor_worker_partitionable=False)
    assert knobs["SLOT_TYPE_1_PARTITIONABLE"] == "FALSE"


def test_worker_pool_membership_file() -> None:
    text = render_template("htcondor_worker", "90-htcpool-pool.conf.j2", role_vars("debian13", {
        "htcondor_worker_condor_host": "ip-198-18-0-4.ec2.internal",
        "htcondor_worker_instance_id": "i-0123456789abcdef0",
        "htcondor_worker_instance_type": "c6i.xlarge",
    }))
    knobs = condor_config(text)
    assert knobs["CONDOR_HOST"] == "ip-198-18-0-4.ec2.internal"
    assert knobs["EC2INSTANCEID"] == '"i-0123456789abcdef0"'
    assert knobs["EC2INSTANCETYPE"] == '"c6i.xlarge"'
    assert knobs["HTCPOOLPOOL"] == '"htcpool"'
    assert entries(knobs["STARTD_ATTRS"]) == ["$(STARTD_ATTRS)", "HtcpoolPool", "EC2InstanceId",
                                              "EC2InstanceType"]
    assert text.endswith("EC2InstanceType\n")


def test_worker_instance_attributes_come_from_the_inventory() -> None:
    """The aws_ec2 inventory's instance_id and instance_type, and neither when absent."""
    membership = {"htcondor_worker_condor_host": "cm"}
    knobs = condor_config(render_template("htcondor_worker", "90-htcpool-pool.conf.j2", role_vars(
        "debian13", {**membership, "instance_id": "i-0abc", "instance_type": "t3.large"})))
    assert (knobs["EC2INSTANCEID"], knobs["EC2INSTANCETYPE"]) == ('"i-0abc"', '"t3.large"')
    knobs = condor_config(render_template("htcondor_worker", "90-htcpool-pool.conf.j2",
                                          role_vars("debian13", membership)))
    assert "EC2INSTANCEID" not in knobs and "EC2INSTANCETYPE" not in knobs
    assert entries(knobs["STARTD_ATTRS"]) == ["$(STARTD_ATTRS)", "HtcpoolPool"]


def test_worker_sets_no_hardware_and_gpu_discovery_is_opt_in() -> None:
    text, knobs = worker()
    assert "NUM_CPUS" not in knobs and "MEMORY" not in knobs
    assert "feature : GPUs" not in text
    text, _ = worker(htcondor_worker_gpu_enabled=True)
    assert "\nuse feature : GPUs\n" in text


def test_first_boot_unit_runs_before_condor_and_once() -> None:
    variables = role_vars("debian13")
    unit = render_template("htcondor_worker", "htcpool-worker-firstboot.service.j2", variables)
    assert "Before=condor.service" in unit
    assert "Type=oneshot" in unit
    assert "ConditionPathExists=!/etc/condor/config.d/90-htcpool-pool.conf" in unit
    assert "EnvironmentFile=-/etc/environment" in unit
    dropin = render_template("htcondor_worker", "condor-firstboot.conf.j2", variables)
    assert "Requires=htcpool-worker-firstboot.service" in dropin
    assert "After=htcpool-worker-firstboot.service" in dropin
    env = render_template("htcondor_worker", "htcpool-worker.env.j2", variables)
    assert "HTCPOOL_TOKEN_FILE=/etc/condor/tokens.d/htcpool-pool" in env
    assert "token" not in env.lower().split("htcpool_token_file")[0].replace("settings", "")


# --- the autoscaler service on the central manager ---------------------------------------

def _service_vars(**overrides: object) -> dict[str, object]:
    # The region's default reads the environment (a lookup the bare templar lacks).
    return role_vars("debian13", {"htcondor_master_autoscaler_enabled": True,
                                  "htcondor_master_autoscaler_region": "us-east-1",
                                  **overrides})


def test_autoscaler_config_is_one_htcpool_reads(tmp_path: object) -> None:
    """The role's htcpool.toml, from the settings a sandbox pool uses (every field of
    AutoscalerConfig, unset ones included), loads into the same Config."""
    from pathlib import Path

    from orchestrator.config import load_config
    from orchestrator.sandbox.pool import manager_autoscaler_vars, sandbox_config

    state = {"region": "eu-west-1", "endpoint_url": "http://127.0.0.1:4580",
             "host_endpoint_url": "http://198.18.0.1:4580"}
    config = sandbox_config(state, pool="htcpool", min_workers=1, warm_pool=True)
    text = render_template("htcondor_master", "htcpool.toml.j2",
                           _service_vars(**manager_autoscaler_vars(state, config)))
    path = Path(str(tmp_path)) / "htcpool.toml"
    path.write_text(text)
    loaded = load_config(str(path))
    assert loaded.autoscaler == config.autoscaler
    assert loaded.condor.transport == "local"
    assert (loaded.region, loaded.endpoint_url) == ("eu-west-1", "http://198.18.0.1:4580")
    assert loaded.worker.instance_type == config.worker.instance_type


def test_autoscaler_config_defaults_and_unit() -> None:
    text = render_template("htcondor_master", "htcpool.toml.j2", _service_vars())
    assert "endpoint_url" not in text and 'transport = "local"' in text
    unit = render_template("htcondor_master", "htcpool-autoscaler.service.j2",
                           _service_vars(htcondor_master_autoscaler_metrics_port=0))
    assert "ExecStart=/opt/htcpool/bin/htcpool autoscale\n" in unit
    assert "Environment=HTCPOOL_CONFIG=/etc/htcpool/htcpool.toml" in unit
    assert "After=network-online.target condor.service" in unit
    unit = render_template("htcondor_master", "htcpool-autoscaler.service.j2", _service_vars())
    assert "autoscale --metrics-port 9110" in unit
