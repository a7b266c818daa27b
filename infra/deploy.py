"""The ``chalice deploy`` path: the data stack first, then ``chalice deploy``, then what Chalice leaves out.

``make deploy STAGE=dev`` runs ``python -m infra.deploy deploy --stage dev``:

1. deploy ``infra/data.json`` as the CloudFormation stack ``agentstream-<stage>-data``
   (tables, queues, alarms) and read its outputs;
2. write a Chalice project under ``build/deploy/<stage>/`` whose ``.chalice/`` holds this
   repository's config and policies with every reference resolved to those outputs and to the
   parameters (Chalice's config takes only literal values);
3. ``chalice deploy`` it. On the first deploy the WebSocket API does not exist yet, so the
   ``execute-api:ManageConnections`` statements are left out, and a second ``chalice deploy``
   adds them scoped to the new API's id: no policy ever names another API;
4. set what ``chalice deploy`` cannot: ``ReportBatchItemFailures`` on the worker's SQS event
   source mapping, the WebSocket stage's throttling and the WebSocket handlers' reserved
   concurrency, all read from ``infra/merge.json``.

Parameters are the packaged stack's (``infra/merge.json``, ``infra/data.json``), given as
``--param Name=value`` or as environment variables named like them (``AgentId`` -> ``AGENT_ID``).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

from botocore.exceptions import ClientError, WaiterError

from infra import stack

BUILD_DIR = stack.ROOT / "build" / "deploy"
# Deleting the tables of these stages needs a deliberate step (docs/deploy.md).
PROTECTED_STAGES = ("prod",)


def env_name(parameter: str) -> str:
    """``AgentAliasId`` -> ``AGENT_ALIAS_ID``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", parameter).upper()


def gather_parameters(stage: str, pairs: Sequence[str], environ: Mapping[str, str] = os.environ) -> Dict[str, str]:
    """Parameters from the environment, then ``Name=value`` pairs; validated like CloudFormation would."""
    given: Dict[str, str] = {}
    for name in stack.parameter_specs():
        if name != "Stage" and environ.get(env_name(name)):
            given[name] = environ[env_name(name)]
    if "TableDeletionProtection" not in given:
        given["TableDeletionProtection"] = "true" if stage in PROTECTED_STAGES else "false"
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise stack.ParameterError(f"--param needs Name=value, got {pair!r}")
        given[name] = value
    return stack.resolve_parameters(stage, given)


class Deployer:
    def __init__(self, session: Any, stage: str, project_dir: Path = stack.ROOT, build_dir: Path = BUILD_DIR,
                 poll_seconds: float = 5.0, log=print, cfn_role_arn: Optional[str] = None) -> None:
        self.session = session
        self.cfn_role_arn = cfn_role_arn
        self.stage = stage
        self.region = session.region_name
        if not self.region:
            raise SystemExit("No AWS Region: pass --region or set AWS_REGION (or a profile's region).")
        self.project_dir = Path(project_dir)
        self.build = Path(build_dir) / stage
        self.poll_seconds = poll_seconds
        self.log = log
        self.cfn = session.client("cloudformation")

    # ---- the data stack

    def data_stack(self, parameters: Mapping[str, str]) -> Dict[str, str]:
        """Create or update the data stack; its outputs."""
        name = stack.data_stack_name(self.stage)
        template = stack.load_json(stack.DATA_TEMPLATE)
        args = {
            "StackName": name,
            "TemplateBody": json.dumps(template),
            "Parameters": [{"ParameterKey": key, "ParameterValue": parameters[key]} for key in template["Parameters"]],
            "Tags": [{"Key": "app", "Value": stack.APP_NAME}, {"Key": "stage", "Value": self.stage}],
        }
        if self.cfn_role_arn:  # CloudFormation acts with this role's permissions, not the caller's
            args["RoleARN"] = self.cfn_role_arn
        status = self._stack_status(name)
        if status == "ROLLBACK_COMPLETE":
            raise SystemExit(f"{name} failed to create and rolled back; delete it (make destroy) and deploy again.")
        if status is None:
            self.log(f"Creating the data stack {name} ...")
            self.cfn.create_stack(**args)
            self._wait(name, "stack_create_complete")
        else:
            self.log(f"Updating the data stack {name} ...")
            try:
                self.cfn.update_stack(**args)
            except ClientError as exc:
                if "No updates are to be performed" not in str(exc):
                    raise
                self.log("  no changes")
            else:
                self._wait(name, "stack_update_complete")
        return self.outputs(name)

    def outputs(self, name: str) -> Dict[str, str]:
        (described,) = self.cfn.describe_stacks(StackName=name)["Stacks"]
        return {output["OutputKey"]: output["OutputValue"] for output in described.get("Outputs", [])}

    def _stack_status(self, name: str) -> Optional[str]:
        try:
            (described,) = self.cfn.describe_stacks(StackName=name)["Stacks"]
        except ClientError as exc:
            if "does not exist" in str(exc):
                return None
            raise
        return described["StackStatus"]

    def _wait(self, name: str, waiter: str) -> None:
        try:
            self.cfn.get_waiter(waiter).wait(
                StackName=name, WaiterConfig={"Delay": self.poll_seconds, "MaxAttempts": int(1800 / max(self.poll_seconds, 0.1))}
            )
        except WaiterError:
            events = self.cfn.describe_stack_events(StackName=name)["StackEvents"]
            for event in events[:20]:
                if event["ResourceStatus"].endswith("FAILED"):
                    self.log(f"  {event['LogicalResourceId']}: {event.get('ResourceStatusReason', '')}")
            raise SystemExit(f"{name}: {waiter.replace('_', ' ')} failed; the events above say why.") from None

    # ---- chalice deploy

    def chalice(self, *args: str) -> None:
        command = stack.chalice_command() + ["--project-dir", str(self.build)] + list(args)
        subprocess.run(command, check=True, env=stack.chalice_env(self.region))

    def refuse_the_other_path(self) -> None:
        """Stop before touching anything when this stage's functions exist but this project did not
        deploy them: the CloudFormation path (or another checkout) owns them, and going on would
        fail halfway with "already exists"."""
        if (self.project_dir / ".chalice" / "deployed" / f"{self.stage}.json").exists():
            return
        name = stack.function_name(self.stage, "websocket_connect")
        try:
            function = self.session.client("lambda").get_function(FunctionName=name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return
            raise
        # CloudFormation tags each function it creates with its stack's name (lambda:GetFunction returns
        # the tags): no further permission is needed to tell the two paths apart.
        owner = (function.get("Tags") or {}).get("aws:cloudformation:stack-name")
        if owner:
            raise SystemExit(
                f"Stage {self.stage!r} is already deployed by the CloudFormation stack {owner!r} "
                f"({name} is its resource). Update it on that path (docs/deploy.md, Path 1), or delete that stack "
                "before using make deploy for this stage."
            )
        raise SystemExit(
            f"{name} already exists but this checkout has no .chalice/deployed/{self.stage}.json: another checkout "
            "deployed this stage with make deploy. Copy its .chalice/deployed file here (docs/deploy.md), or use another STAGE."
        )

    def deploy(self, parameters: Mapping[str, str]) -> Dict[str, str]:
        self.refuse_the_other_path()
        outputs = self.data_stack(parameters)
        api_id = stack.deployed_websocket_api_id(self.stage, self.project_dir)
        context = stack.context_from_outputs(parameters, outputs, api_id)
        deferred = stack.render_project(self.stage, context, self.build, self.project_dir, defer={"WebsocketAPI"})
        self.chalice("deploy", "--stage", self.stage)
        rendered_for, api_id = api_id, stack.deployed_websocket_api_id(self.stage, self.project_dir)
        if not api_id:
            raise SystemExit("chalice deploy recorded no WebSocket API id in .chalice/deployed/")
        if deferred or api_id != rendered_for:
            self.log(f"Scoping {', '.join(deferred) or 'the policies'} to the API {api_id} ...")
            context = stack.context_from_outputs(parameters, outputs, api_id)
            stack.render_project(self.stage, context, self.build, self.project_dir)
            self.chalice("deploy", "--stage", self.stage)
        self.finish(context, api_id)
        return self.summary(outputs)

    def finish(self, context: stack.Context, api_id: str) -> None:
        """Apply what infra/merge.json sets and chalice deploy does not."""
        source = stack.app_resource_properties("TurnWorker", context)["Events"]["TurnWorkerSqsEventSource"]["Properties"]
        awslambda = self.session.client("lambda")
        worker = stack.function_name(self.stage, "turn_worker")
        mappings = [
            mapping
            for mapping in awslambda.list_event_source_mappings(EventSourceArn=source["Queue"])["EventSourceMappings"]
            if mapping["FunctionArn"].split(":")[6] == worker
        ]
        if len(mappings) != 1:
            raise SystemExit(f"expected one event source mapping from the turn queue to {worker}, found {len(mappings)}")
        (mapping,) = mappings
        if mapping.get("FunctionResponseTypes", []) != source["FunctionResponseTypes"]:
            self.log(f"Reporting partial batch failures on {worker}'s event source ...")
            awslambda.update_event_source_mapping(UUID=mapping["UUID"], FunctionResponseTypes=source["FunctionResponseTypes"])
        for logical_id, function in (("WebsocketConnect", "websocket_connect"), ("WebsocketMessage", "websocket_message")):
            self.reserve(awslambda, stack.function_name(self.stage, function),
                         stack.app_resource_properties(logical_id, context).get("ReservedConcurrentExecutions"))
        routes = stack.app_resource_properties("WebsocketAPIStage", context)["DefaultRouteSettings"]
        api_stage = stack.chalice_config(self.stage, project_dir=self.project_dir).api_gateway_stage
        self.session.client("apigatewayv2").update_stage(
            ApiId=api_id,
            StageName=api_stage,
            DefaultRouteSettings={
                "ThrottlingRateLimit": float(routes["ThrottlingRateLimit"]),
                "ThrottlingBurstLimit": int(routes["ThrottlingBurstLimit"]),
            },
        )

    def reserve(self, awslambda: Any, function: str, reserved: Any) -> None:
        """Reserve a WebSocket handler's concurrency as the template would, or lift a reservation."""
        current = awslambda.get_function_concurrency(FunctionName=function).get("ReservedConcurrentExecutions")
        wanted = None if reserved is None else int(reserved)
        if current == wanted:
            return
        if wanted is None:
            self.log(f"Lifting {function}'s reserved concurrency ...")
            awslambda.delete_function_concurrency(FunctionName=function)
        else:
            self.log(f"Reserving {wanted} concurrent executions for {function} ...")
            awslambda.put_function_concurrency(FunctionName=function, ReservedConcurrentExecutions=wanted)

    def summary(self, outputs: Mapping[str, str]) -> Dict[str, str]:
        deployed = stack.load_json(self.project_dir / ".chalice" / "deployed" / f"{self.stage}.json")
        url = next(r["websocket_api_url"] for r in deployed["resources"] if r.get("resource_type") == "websocket_api")
        result = {stack.URL_OUTPUT: url, **outputs}
        width = max(len(key) for key in result)
        for key, value in result.items():
            self.log(f"{key:<{width}}  {value}")
        return result

    # ---- tear down

    def destroy(self) -> None:
        name = stack.data_stack_name(self.stage)
        if (self.project_dir / ".chalice" / "deployed" / f"{self.stage}.json").exists():
            stack.prepare_project(self.stage, self.build, self.project_dir)
            self.chalice("delete", "--stage", self.stage)
        status = self._stack_status(name)
        if status is None:
            self.log(f"{name} does not exist")
            return
        self.log(f"Deleting the data stack {name} ...")
        self.cfn.delete_stack(StackName=name)
        try:
            self._wait(name, "stack_delete_complete")
        except SystemExit:
            raise SystemExit(
                f"{name} could not be deleted. If the tables are protected, update the stack with "
                "TableDeletionProtection=false first (docs/deploy.md, 'Tear down')."
            ) from None


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["deploy", "destroy", "check"])
    parser.add_argument("--stage", required=True)
    parser.add_argument("--region", help="default: AWS_REGION, AWS_DEFAULT_REGION or the profile's")
    parser.add_argument("--profile")
    parser.add_argument("--param", action="append", default=[], metavar="Name=value")
    parser.add_argument("--cfn-role-arn", default=os.environ.get("CFN_ROLE_ARN") or None,
                        help="service role CloudFormation uses for the data stack (default: CFN_ROLE_ARN)")
    args = parser.parse_args(argv)
    try:
        stack.chalice_config(args.stage)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.command in ("deploy", "check"):
        try:
            parameters = gather_parameters(args.stage, args.param)
        except stack.ParameterError as exc:
            print(f"Parameters: {exc}", file=sys.stderr)
            return 2
        if args.command == "check":
            print(json.dumps(parameters, indent=2))
            return 0
    import boto3

    region = args.region or os.environ.get("AWS_REGION") or None  # else AWS_DEFAULT_REGION or the profile's
    session = boto3.session.Session(profile_name=args.profile, region_name=region)
    deployer = Deployer(session, args.stage, cfn_role_arn=args.cfn_role_arn)
    if args.command == "deploy":
        deployer.deploy(parameters)
    else:
        deployer.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
