"""Bootstrap and bake wall time on the sandbox (issue 3).

    sudo .venv/bin/python -m bench.ansible_bench [--index 0]

Brings up its own sandbox, provisions the AWS side, launches a central manager and two
workers from the base image, times playbooks/bootstrap.yml (through ansible-runner, as
`htcpool bootstrap` runs it), then times playbooks/bake_worker_image.yml, and takes the
sandbox down. Targets: bootstrap < 3 min, bake < 4 min.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.results import git_revision, machine, update_section
from orchestrator.aws.ec2 import Cloud
from orchestrator.aws.records import LaunchRequest
from orchestrator.sandbox import control
from orchestrator.sandbox.pool import (
    _playbook,
    aws_environment,
    default_subnets,
    launch_central_manager,
    sandbox_config,
)
from orchestrator.sandbox.settings import SandboxSettings
from orchestrator.vocabulary import LaunchedBy, Role


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index", type=int, default=0)
    args = parser.parse_args()
    settings = SandboxSettings(state_dir=Path("/tmp/htcpool-bench/ansible"), index=args.index)
    quiet = lambda _m: None  # noqa: E731
    state = control.up(settings, progress=quiet)
    try:
        with aws_environment(state):
            config = sandbox_config(state)
            cloud = Cloud(config)
            _playbook(config, state, "aws_resources.yml", quiet)
            launch_central_manager(cloud, state)
            workers = cloud.launch(LaunchRequest(
                count=2, image_id=state["base_ami"], instance_types=["t3.medium"],
                subnets=default_subnets(cloud), security_groups=cloud.worker_security_groups(),
                instance_profile=config.worker_instance_profile, role=Role.WORKER,
                launched_by=LaunchedBy.PLAYBOOK))
            cloud.wait("start", [w.id for w in workers])
            start = time.perf_counter()
            _playbook(config, state, "bootstrap.yml", quiet)
            bootstrap_s = time.perf_counter() - start
            start = time.perf_counter()
            _playbook(config, state, "bootstrap.yml", quiet)
            again_s = time.perf_counter() - start
            start = time.perf_counter()
            _playbook(config, state, "bake_worker_image.yml", quiet,
                      htcpool_bake_base_ami=state["base_ami"])
            bake_s = time.perf_counter() - start
    finally:
        control.down(settings, progress=quiet)
    text = (f"Command: `python -m bench.ansible_bench`  \nMachine: {machine()}  \n"
            f"Revision: {git_revision()}, {time.strftime('%Y-%m-%d')}\n\n"
            "| measure | seconds | target |\n|---|---|---|\n"
            f"| bootstrap.yml: central manager + 2 workers, from bare hosts | {bootstrap_s:.0f} "
            "| < 180 |\n"
            f"| bootstrap.yml again (nothing to change) | {again_s:.0f} | - |\n"
            f"| bake_worker_image.yml: builder, worker role in image mode, image available | "
            f"{bake_s:.0f} | < 240 |\n\n"
            "Pipelining is on (ansible.cfg) and plays gather only the facts they use.\n")
    print(text)
    update_section("ansible", "Bootstrap and bake", text)


if __name__ == "__main__":
    main()
