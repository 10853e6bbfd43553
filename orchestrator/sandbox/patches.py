"""The points where moto's backends hand over to the emulator.

Patched at class level in the sandbox server process only (never in the orchestrator),
each wrapper validates like EC2 does, lets moto keep its records, then tells the
emulator what to do to the hosts.
"""

from __future__ import annotations

from typing import Any

from orchestrator.sandbox.emulator import Emulator

_installed = False


def _incorrect_state(instance: Any, action: str) -> Exception:
    from moto.ec2.exceptions import EC2ClientError

    return EC2ClientError(
        "IncorrectInstanceState",
        f"The instance '{instance.id}' is not in a state from which it can be {action}.")


def install(emu: Emulator) -> None:
    global _installed
    if _installed:
        raise RuntimeError("sandbox patches are installed once per process")
    _installed = True

    from moto.core.exceptions import JsonRESTError
    from moto.ec2.models import EC2Backend
    from moto.ssm.models import Command, SimpleSystemManagerBackend

    orig_run = EC2Backend.run_instances
    orig_start = EC2Backend.start_instances
    orig_stop = EC2Backend.stop_instances
    orig_terminate = EC2Backend.terminate_instances
    orig_reboot = EC2Backend.reboot_instances
    orig_create_image = EC2Backend.create_image
    orig_deregister = EC2Backend.deregister_image

    def run_instances(self: Any, image_id: str, count: int, user_data: Any,
                      security_group_names: list[str], **kwargs: Any) -> Any:
        if self is not emu.ec2:
            return orig_run(self, image_id, count, user_data, security_group_names, **kwargs)
        token = kwargs.get("client_token")
        if token and token != "ABCDE":  # moto's stand-in when no token was sent
            # EC2 semantics: the same ClientToken returns the first call's reservation.
            for reservation in self.reservations.values():
                if reservation.instances and reservation.instances[0].client_token == token:
                    return reservation
        emu.check_image(image_id)
        if not kwargs.get("subnet_id") and not kwargs.get("nics"):
            # EC2 puts such instances in the default subnet of the zone; moto would invent
            # an address outside any subnet.
            zone = kwargs.get("placement") or f"{self.region_name}a"
            subnet = self.get_default_subnets().get(zone)
            if subnet is not None:
                kwargs["subnet_id"] = subnet.id
        reservation = orig_run(self, image_id, count, user_data, security_group_names, **kwargs)
        try:
            emu.on_launched(list(reservation.instances))
        except Exception as exc:
            # Nothing half-done: the records go too, and the caller sees why.
            orig_terminate(self, [i.id for i in reservation.instances])
            from moto.ec2.exceptions import EC2ClientError

            raise EC2ClientError("InternalError", f"sandbox could not create hosts: {exc}") \
                from exc
        return reservation

    def start_instances(self: Any, instance_ids: list[str]) -> Any:
        if self is not emu.ec2:
            return orig_start(self, instance_ids)
        instances = self.get_multi_instances_by_id(instance_ids)
        for inst in instances:
            if inst.state not in ("stopped", "running", "pending"):
                raise _incorrect_state(inst, "started")
        result = []
        for inst in instances:
            previous = type(inst._state)(inst._state.name, inst._state.code)
            if inst.state == "stopped":
                orig_start(self, [inst.id])
                emu.on_start(inst)
            result.append((inst, previous))
        return result

    def stop_instances(self: Any, instance_ids: list[str]) -> Any:
        if self is not emu.ec2:
            return orig_stop(self, instance_ids)
        instances = self.get_multi_instances_by_id(instance_ids)
        for inst in instances:
            if inst.state in ("terminated", "shutting-down"):
                raise _incorrect_state(inst, "stopped")
        result = []
        for inst in instances:
            previous = type(inst._state)(inst._state.name, inst._state.code)
            if inst.state in ("running", "pending"):
                orig_stop(self, [inst.id])
                emu.on_stop(inst)
            result.append((inst, previous))
        return result

    def terminate_instances(self: Any, instance_ids: list[str]) -> Any:
        if self is not emu.ec2:
            return orig_terminate(self, instance_ids)
        instances = self.get_multi_instances_by_id(instance_ids)
        result = []
        for inst in instances:
            previous = type(inst._state)(inst._state.name, inst._state.code)
            if inst.state not in ("terminated", "shutting-down"):
                orig_terminate(self, [inst.id])
                emu.on_terminate(inst)
            result.append((inst, previous))
        return result

    def reboot_instances(self: Any, instance_ids: list[str]) -> Any:
        if self is not emu.ec2:
            return orig_reboot(self, instance_ids)
        instances = self.get_multi_instances_by_id(instance_ids)
        for inst in instances:
            if inst.state != "running":
                raise _incorrect_state(inst, "rebooted")
        for inst in instances:
            emu.on_reboot(inst)
        return instances

    def create_image(self: Any, instance_id: str, name: str, description: str,
                     tag_specifications: list[dict[str, Any]]) -> Any:
        if self is not emu.ec2:
            return orig_create_image(self, instance_id, name, description, tag_specifications)
        from moto.ec2.exceptions import EC2ClientError

        inst = self.get_instance(instance_id)
        if inst.state not in ("running", "stopped", "stopping"):
            raise _incorrect_state(inst, "imaged")
        if any(a.name == name for a in self.amis.values()):
            raise EC2ClientError("InvalidAMIName.Duplicate",
                                 f"AMI name {name} is already in use by another AMI")
        # moto rejects snapshot tag specifications; EC2 applies them to the new snapshots.
        image_specs = [t for t in tag_specifications if t.get("ResourceType") != "snapshot"]
        snapshot_tags = [tag for t in tag_specifications if t.get("ResourceType") == "snapshot"
                         for tag in t.get("Tags", [])]
        ami = orig_create_image(self, instance_id, name, description, image_specs)
        snapshot = getattr(ami, "ebs_snapshot", None)
        for tag in snapshot_tags:
            if snapshot is not None:
                snapshot.add_tag(tag["Key"], tag["Value"])
        emu.on_create_image(ami, instance_id)
        return ami

    def deregister_image(self: Any, ami_id: str) -> None:
        orig_deregister(self, ami_id)
        if self is emu.ec2:
            emu.on_deregister(ami_id)

    orig_describe = EC2Backend.describe_instances
    orig_by_ids = EC2Backend.get_reservations_by_instance_ids
    orig_create_tags = EC2Backend.create_tags

    def get_reservations_by_instance_ids(self: Any, instance_ids: list[str],
                                         filters: Any = None) -> Any:
        if self is emu.ec2:
            from moto.ec2.exceptions import InvalidInstanceIdError

            for iid in instance_ids:
                if emu.too_new(iid):
                    raise InvalidInstanceIdError(iid)
        return orig_by_ids(self, instance_ids, filters)

    def describe_instances(self: Any, filters: Any = None) -> Any:
        reservations = orig_describe(self, filters)
        if self is not emu.ec2 or emu.hide_new_s <= 0:
            return reservations
        out = []
        for reservation in reservations:
            shown = [i for i in reservation.instances if not emu.too_new(i.id)]
            if shown:
                copy = type(reservation).__new__(type(reservation))
                copy.__dict__.update(reservation.__dict__)
                copy.instances = shown
                out.append(copy)
        return out

    def create_tags(self: Any, resource_ids: list[str], tags: dict[str, str]) -> Any:
        if self is emu.ec2:
            from moto.ec2.exceptions import InvalidInstanceIdError

            for rid in resource_ids:
                if emu.too_new(rid):
                    raise InvalidInstanceIdError(rid)
        return orig_create_tags(self, resource_ids, tags)

    EC2Backend.describe_instances = describe_instances  # type: ignore[method-assign]
    EC2Backend.get_reservations_by_instance_ids = (  # type: ignore[method-assign]
        get_reservations_by_instance_ids)
    EC2Backend.create_tags = create_tags  # type: ignore[method-assign]
    EC2Backend.run_instances = run_instances  # type: ignore[method-assign]
    EC2Backend.start_instances = start_instances  # type: ignore[method-assign]
    EC2Backend.stop_instances = stop_instances  # type: ignore[method-assign]
    EC2Backend.terminate_instances = terminate_instances  # type: ignore[method-assign]
    EC2Backend.reboot_instances = reboot_instances  # type: ignore[method-assign]
    EC2Backend.create_image = create_image  # type: ignore[method-assign]
    EC2Backend.deregister_image = deregister_image  # type: ignore[method-assign]

    orig_send = SimpleSystemManagerBackend.send_command

    def send_command(self: Any, **kwargs: Any) -> Any:
        if self is not emu.ssm or kwargs.get("document_name") != "AWS-RunShellScript":
            return orig_send(self, **kwargs)
        ids = emu.resolve_targets(kwargs.get("instance_ids") or [], kwargs.get("targets") or [])
        if not ids:
            raise JsonRESTError("InvalidInstanceId", "No instance matches the targets")
        running = {i.id for i in emu.instances() if i.state == "running"}
        bad = [i for i in ids if i not in running or i not in emu.workers]
        if bad:
            raise JsonRESTError(
                "InvalidInstanceId",
                f"Instances [{', '.join(bad)}] not in a valid state for account")
        params = kwargs.get("parameters") or {}
        script = "\n".join(params.get("commands") or [])
        timeout_s = float((params.get("executionTimeout") or ["3600"])[0])
        targets = kwargs.get("targets") or []
        command = Command(
            account_id=self.account_id, comment=kwargs.get("comment", ""),
            document_name="AWS-RunShellScript", timeout_seconds=kwargs.get("timeout_seconds"),
            instance_ids=list(ids), parameters=params, targets=[],
            backend_region=self.region_name,
            max_concurrency=kwargs.get("max_concurrency", ""),
            max_errors=kwargs.get("max_errors", ""),
            notification_config=kwargs.get("notification_config"),
            output_s3_bucket_name=kwargs.get("output_s3_bucket_name", ""),
            output_s3_key_prefix=kwargs.get("output_s3_key_prefix", ""),
            output_s3_region=kwargs.get("output_s3_region", ""),
            service_role_arn=kwargs.get("service_role_arn", ""))
        # moto's Command adds every instance of the region when Targets is empty.
        command.instance_ids = ids
        command.invocations = [command.invocation_response(i, "aws:runShellScript") for i in ids]
        command.target_count = len(ids)
        command.targets = targets
        self._commands.append(command)
        emu.run_command(command, script, timeout_s)
        return command

    SimpleSystemManagerBackend.send_command = send_command  # type: ignore[method-assign,assignment]

    from moto.core.responses import ActionResult
    from moto.ssm.responses import SimpleSystemManagerResponse

    def list_command_invocations(self: Any) -> Any:
        """Not in moto: the call `aws ssm list-command-invocations --details` makes."""
        command_id = self._get_param("CommandId")
        instance_id = self._get_param("InstanceId")
        details = self._get_param("Details", False)
        commands = self.ssm_backend.list_commands(command_id, instance_id)
        out = []
        for command in commands:
            for inv in command.invocations:
                if instance_id and inv["InstanceId"] != instance_id:
                    continue
                item = {"CommandId": command.command_id, "InstanceId": inv["InstanceId"],
                        "DocumentName": command.document_name, "Status": inv["Status"],
                        "StatusDetails": inv["StatusDetails"],
                        "RequestedDateTime": command.requested_date_time.isoformat()}
                if details:
                    item["CommandPlugins"] = [{
                        "Name": inv["PluginName"], "Status": inv["Status"],
                        "StatusDetails": inv["StatusDetails"], "ResponseCode": inv["ResponseCode"],
                        "Output": inv["StandardOutputContent"]}]
                out.append(item)
        return ActionResult({"CommandInvocations": out})

    SimpleSystemManagerResponse.list_command_invocations = (  # type: ignore[attr-defined]
        list_command_invocations)
