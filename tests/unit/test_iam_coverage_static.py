"""Issue 7: the shipped IAM policies cover exactly the AWS actions the code calls (static).

The orchestrator's boto3 calls (found in its source: client methods, operation names given
as strings, EC2 waiters) and the Ansible modules the playbooks use (mapped to actions in
tests/iam_lib.py) against iam/operator-policy.json; the first-boot script against
iam/instance-policy.json; the autoscaler as a service on the central manager against
iam/central-manager-autoscaler-policy.json (with the instance role's grants). Both ways:
every call granted, every grant used. Known differences are listed in tests/iam_lib.py with
what to change; tests/e2e/test_iam_coverage.py checks the same against the API calls a
sandbox test session really made.
"""

from __future__ import annotations

from tests.support.iam import (
    ANSIBLE_ACTIONS,
    AUTOSCALER_FOUND_NOT_CALLED,
    AUTOSCALER_GRANTED_NOT_CALLED,
    CENTRAL_MANAGER_AUTOSCALER_POLICY,
    GRANTED_NOT_CALLED,
    INSTANCE_GRANTED_NOT_CALLED,
    KNOWN_MISSING,
    OPTIONAL_MODULES,
    allows,
    ansible_actions,
    ansible_modules_used,
    autoscaler_actions,
    calls_in_source,
    central_manager_actions,
    code_actions,
    concrete,
    instance_actions,
    instance_code_files,
    operator_actions,
    operator_code_files,
    policy_actions,
)


def test_the_scanner_finds_calls_and_ignores_look_alikes() -> None:
    source = '''
import boto3
__all__ = ["get_policy"]
def get_policy(): ...
class C:
    def go(self):
        self.cloud.ec2.run_instances(ImageId="x")
        self.client("ssm").send_command()
        ssm.get_command_invocation()
        getattr(self.ec2, {"stop": "stop_instances"}["stop"])()
        self._paginate("ec2", "describe_images", "Images")
        self.ec2.get_waiter("instance_status_ok")
        get_policy()
        self.list_commands()
'''
    assert calls_in_source(source) == {
        "ec2:RunInstances", "ssm:SendCommand", "ssm:GetCommandInvocation",
        "ec2:StopInstances", "ec2:DescribeImages", "ec2:DescribeInstanceStatus"}


def test_the_code_is_found() -> None:
    calls = code_actions(operator_code_files())
    for action in ("ec2:RunInstances", "ec2:TerminateInstances", "ec2:DescribeInstances",
                   "ssm:SendCommand", "ssm:GetCommandInvocation", "dynamodb:PutItem"):
        assert action in calls, action
    assert "ssm:GetParameters" in code_actions(instance_code_files())


def test_every_aws_ansible_module_used_is_mapped() -> None:
    used = ansible_modules_used()
    unmapped = {m: sorted(where) for m, where in used.items()
                if m not in ANSIBLE_ACTIONS and m not in OPTIONAL_MODULES}
    assert not unmapped, f"add these to tests/iam_lib.py ANSIBLE_ACTIONS: {unmapped}"


def test_ansible_modules_need_only_granted_actions() -> None:
    denied = {a: sorted(m) for a, m in ansible_actions().items()
              if not allows(operator_actions(), a)}
    assert not denied, denied


def test_first_boot_needs_only_the_instance_policy() -> None:
    denied = {a: sorted(f) for a, f in code_actions(instance_code_files()).items()
              if not allows(instance_actions(), a)}
    assert not denied, denied


def _missing() -> dict[str, list[str]]:
    return {a: sorted(f) for a, f in code_actions(operator_code_files()).items()
            if not allows(operator_actions(), a)}


def test_the_known_gaps_are_the_only_gaps() -> None:
    """A new call the policy does not grant fails here at once (the known ones are listed,
    with the change to make, in tests/iam_lib.py KNOWN_MISSING)."""
    assert set(_missing()) <= set(KNOWN_MISSING), _missing()


def test_the_operator_policy_grants_every_call() -> None:
    assert not _missing(), _missing()


def test_every_granted_action_is_used_or_listed() -> None:
    used = set(code_actions(operator_code_files())) | set(ansible_actions())
    unused = {a for a in concrete(operator_actions()) if a not in used}
    listed = set(GRANTED_NOT_CALLED)
    assert unused - listed == set(), f"granted, never called, not listed: {unused - listed}"
    assert listed - unused == set(), f"listed as unused but called (or no longer granted): " \
                                     f"{listed - unused}"


def test_every_instance_grant_is_used_or_listed() -> None:
    used = set(code_actions(instance_code_files()))
    unused = {a for a in concrete(policy_actions("instance-policy.json")) if a not in used}
    assert unused == set(INSTANCE_GRANTED_NOT_CALLED), unused


def test_the_autoscaler_scan_finds_its_calls() -> None:
    calls = autoscaler_actions()
    for action in ("ec2:DescribeInstances", "ec2:RunInstances", "ec2:TerminateInstances",
                   "ec2:CreateTags", "dynamodb:PutItem"):
        assert action in calls, action
    # Cloud methods the autoscaler never reaches stay out (remote condor views, regions).
    for action in ("ssm:SendCommand", "ec2:DescribeRegions", "ec2:DescribeInstanceStatus"):
        assert action not in calls, action


def test_the_autoscaler_on_the_central_manager_needs_only_its_roles_grants() -> None:
    """`htcpool autoscale` as the master role's service: every call it makes is granted by
    the central manager's role (instance policy, SSM core, the autoscaler's policy)."""
    denied = {a: sorted(w) for a, w in autoscaler_actions().items()
              if a not in AUTOSCALER_FOUND_NOT_CALLED
              and not allows(central_manager_actions(), a)}
    assert not denied, denied
    for action in AUTOSCALER_FOUND_NOT_CALLED:
        assert action in autoscaler_actions(), f"{action} is no longer found: unlist it"
        assert not allows(policy_actions(CENTRAL_MANAGER_AUTOSCALER_POLICY), action), action


def test_every_central_manager_autoscaler_grant_is_used_or_listed() -> None:
    used = set(autoscaler_actions())
    granted = set(concrete(policy_actions(CENTRAL_MANAGER_AUTOSCALER_POLICY)))
    assert granted - used == set(AUTOSCALER_GRANTED_NOT_CALLED), granted - used


def test_no_policy_uses_wildcard_actions() -> None:
    for name in ("operator-policy.json", "instance-policy.json",
                 CENTRAL_MANAGER_AUTOSCALER_POLICY):
        assert set(concrete(policy_actions(name))) == set(policy_actions(name)), name
