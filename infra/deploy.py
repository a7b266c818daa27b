"""The ``chalice deploy`` path: a CloudFormation stack first, then ``chalice deploy``, then what Chalice leaves out.

``make deploy STAGE=dev`` runs ``python -m infra.deploy deploy --stage dev``:

1. deploy ``stack.deploy_template`` as the CloudFormation stack ``agentstream-<stage>-data``:
   ``infra/data.json`` (tables, queues, alarms) plus one IAM role per function holding its
   ``.chalice`` policy verbatim, and the app's environment as outputs. CloudFormation resolves every
   intrinsic and enforces the parameters' Rules; nothing here evaluates a template;
2. write a Chalice project under ``build/deploy/<stage>/`` whose config hands each function its role
   (``manage_iam_role: false``) and the environment those outputs hold;
3. ``chalice deploy`` it. On the first deploy the WebSocket API does not exist yet, so the stack's
   ``WebsocketAPI`` parameter is empty and the ``execute-api:ManageConnections`` grants match no
   API; once Chalice has created the API, the stack is updated with its id (roles change, and the
   functions' ``WEBSOCKET_API_ID``, so ``chalice deploy`` runs once more);
4. set what ``chalice deploy`` cannot: ``ReportBatchItemFailures`` on the SQS event source
   mappings (the turn worker's, the uploads') and the WebSocket stage's throttling, as
   ``infra/merge.json`` sets them;
5. publish the chat page and its ``config.json`` to the stage's bucket (``infra/page.py``) and print
   the page's URL last: where a user signs in and chats.

Parameters are the packaged stack's (``infra/merge.json``, ``infra/data.json``), given as
``--param Name=value`` or as environment variables named like them (``AgentId`` -> ``AGENT_ID``).

``make preflight STAGE=prod`` (``python -m infra.deploy preflight --stage prod --stack-name N``) is the
CloudFormation path's check: nothing of this path, or of another stack, in the way of stack ``N``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set

from botocore.exceptions import ClientError, WaiterError

from infra import envsize, page, stack

BUILD_DIR = stack.ROOT / "build" / "deploy"
# Deleting the tables of these stages needs a deliberate step (docs/deploy.md).
PROTECTED_STAGES = ("prod",)
# The functions fed by an SQS queue (app.py's on_sqs_message), each with the data stack's output that
# names its queue: merge.json sets their event sources' FunctionResponseTypes, chalice deploy cannot.
SQS_CONSUMERS = {"turn_worker": "TurnQueueArn", "document_uploads": "UploadsQueueArn"}


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
    # Not a choice, as the packaged template pins it: the retention Chalice gives the functions' log groups.
    given["LogRetentionInDays"] = str(stack.log_retention_days(stage))
    return stack.resolve_parameters(stage, given)


def access_log_format() -> str:
    """The WebSocket stage's access log format, read from the packaged stage in ``infra/merge.json``
    so that both deploy paths log the same fields."""
    settings = stack.load_json(stack.APP_TEMPLATE)["Resources"]["WebsocketAPIStage"]["Properties"]["AccessLogSettings"]
    _, when_logging, _ = settings["Fn::If"]
    return when_logging["Format"]


class Deployer:
    def __init__(self, session: Any, stage: str, project_dir: Path = stack.ROOT, build_dir: Path = BUILD_DIR,
                 poll_seconds: float = 5.0, log=print, cfn_role_arn: Optional[str] = None,
                 runtime: str = stack.DEFAULT_RUNTIME) -> None:
        self.session = session
        self.runtime = stack.check_runtime(runtime)  # the functions' Lambda runtime (infra/chalice_cli.py)
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

    # ---- the stack before chalice deploy

    def data_stack(self, parameters: Mapping[str, str], websocket_api_id: str = "", rest_api_id: str = "") -> Dict[str, str]:
        """Create or update the stack ``chalice deploy`` builds on; its outputs."""
        name = stack.data_stack_name(self.stage)
        template = stack.deploy_template(self.stage, self.project_dir)
        values = {**parameters, stack.WEBSOCKET_API: websocket_api_id, stack.REST_API: rest_api_id}
        args = {
            "StackName": name,
            "TemplateBody": json.dumps(template),
            "Parameters": [{"ParameterKey": key, "ParameterValue": values[key]} for key in template["Parameters"]],
            "Capabilities": ["CAPABILITY_IAM"],  # the functions' roles (generated names)
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

    def chalice(self, *args: str, environment: Optional[Mapping[str, str]] = None) -> None:
        """The chalice CLI on the rendered project; ``environment`` adds to its process's environment
        (what app.py's event source decorators read as Chalice loads it: ``stack.event_source_environment``)."""
        command = stack.chalice_command(self.runtime) + ["--project-dir", str(self.build)] + list(args)
        subprocess.run(command, check=True, env={**stack.chalice_env(self.region), **(environment or {})})

    def function_owner(self, function: str) -> Optional[str]:
        """Who made this stage's ``function``: the CloudFormation stack it is a resource of, ``""`` when
        it exists outside any stack (``make deploy`` made it), ``None`` when it does not exist.

        CloudFormation tags each function it creates with its stack's name, and lambda:GetFunction
        returns the tags: no further permission is needed to tell the two paths apart.
        """
        try:
            described = self.session.client("lambda").get_function(FunctionName=stack.function_name(self.stage, function))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return None
            raise
        return str((described.get("Tags") or {}).get("aws:cloudformation:stack-name", ""))

    def refuse_the_other_path(self) -> None:
        """Stop before touching anything when this stage's functions exist but this project did not
        deploy them: the CloudFormation path (or another checkout) owns them, and going on would
        fail halfway with "already exists"."""
        if (self.project_dir / ".chalice" / "deployed" / f"{self.stage}.json").exists():
            return
        name = stack.function_name(self.stage, "websocket_connect")
        owner = self.function_owner("websocket_connect")
        if owner is None:
            return
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

    def preflight(self, stack_name: str) -> None:
        """Before ``aws cloudformation deploy`` of the packaged stack as ``stack_name`` (docs/deploy.md,
        Path 1): stop, having created nothing, when ``make deploy`` or another stack holds this stage's
        names. CloudFormation would find out halfway, fail with "already exists" and roll back."""
        problems: List[str] = []
        data = stack.data_stack_name(self.stage)
        if stack_name == data:
            problems.append(f"{data} is the name of make deploy's own stack for this stage: name the packaged stack "
                            f"{stack.APP_NAME}-{self.stage}")
        elif self._stack_status(data) is not None:
            problems.append(f"the stack {data} exists: make deploy deployed this stage (its tables, queues, alarms and "
                            f"roles); make destroy STAGE={self.stage} removes it")
        owned = self._physical_ids(stack_name)
        for function in stack.functions(self.project_dir):
            name, owner = stack.function_name(self.stage, function), self.function_owner(function)
            if owner == "":
                problems.append(f"{name} exists outside CloudFormation: make deploy made it; "
                                f"make destroy STAGE={self.stage} removes it")
            elif owner is not None and owner != stack_name:
                problems.append(f"{name} is a resource of the stack {owner!r}, not of {stack_name!r}")
            elif owner is None:
                # make destroy deletes the functions but leaves their log groups, which the packaged stack creates.
                group = f"/aws/lambda/{name}"
                found = self.session.client("logs").describe_log_groups(logGroupNamePrefix=group)["logGroups"]
                if group not in owned and any(g["logGroupName"] == group for g in found):
                    problems.append(f"the log group {group} exists outside {stack_name!r} (make destroy leaves it): delete it "
                                    f"once you no longer need its logs, aws logs delete-log-group --log-group-name {group}")
        if problems:
            raise SystemExit(
                f"Stage {self.stage!r} cannot be deployed as the stack {stack_name!r}: CloudFormation would stop halfway "
                "with \"already exists\". Deploy each stage one way only (docs/deploy.md).\n  - " + "\n  - ".join(problems)
            )
        self.log(f"Stage {self.stage!r}: nothing of make deploy's or of another stack's in the way of {stack_name!r}.")

    def _physical_ids(self, stack_name: str) -> Set[str]:
        """The physical ids of a stack's resources (log group names among them); none if it does not exist."""
        if self._stack_status(stack_name) is None:
            return set()
        pages = self.cfn.get_paginator("list_stack_resources").paginate(StackName=stack_name)
        return {r.get("PhysicalResourceId", "") for page in pages for r in page["StackResourceSummaries"]}

    def deploy(self, parameters: Mapping[str, str]) -> Dict[str, str]:
        self.refuse_the_other_path()
        api_id = stack.deployed_websocket_api_id(self.stage, self.project_dir) or ""
        rest_id = stack.deployed_rest_api_id(self.stage, self.project_dir) or ""
        outputs = self.data_stack(parameters, api_id, rest_id)
        stack.render_project(self.stage, outputs, self.build, self.project_dir, reserved=self.reserved(parameters))
        self.chalice("deploy", "--stage", self.stage, environment=stack.event_source_environment(outputs))
        deployed = stack.deployed_websocket_api_id(self.stage, self.project_dir)
        deployed_rest = stack.deployed_rest_api_id(self.stage, self.project_dir) or ""
        if not deployed:
            raise SystemExit("chalice deploy recorded no WebSocket API id in .chalice/deployed/")
        if deployed != api_id:
            self.log(f"Scoping the functions' @connections grants to the API {deployed} ...")
        if deployed_rest != rest_id:
            self.log(f"Letting the page call the REST API {deployed_rest} ...")
        if (deployed, deployed_rest) != (api_id, rest_id):
            outputs = self.data_stack(parameters, deployed, deployed_rest)
        if deployed != api_id:
            # Their environment names the API too (WEBSOCKET_API_ID, for the REST API's turns): again, now it exists.
            self.log("Giving the functions the WebSocket API's id ...")
            stack.render_project(self.stage, outputs, self.build, self.project_dir, reserved=self.reserved(parameters))
            self.chalice("deploy", "--stage", self.stage, environment=stack.event_source_environment(outputs))
        self.finish(parameters, outputs, deployed)
        result = self.summary(outputs)
        page.publish(self.session.client("s3"), outputs["PageBucketName"], page.config_from_outputs(result, self.region),
                     log=self.log)
        self.log(f"Sign in and chat: {outputs['PageUrl']}")
        return result

    def reserved(self, parameters: Mapping[str, str]) -> Dict[str, int]:
        """Reserved concurrency per function, as ``merge.json`` reserves it (``0``: none, as its condition says)."""
        count = int(parameters["WebsocketReservedConcurrency"])
        app = stack.load_json(stack.APP_TEMPLATE)["Resources"]
        reserving = [f for f in stack.functions(self.project_dir)
                     if "ReservedConcurrentExecutions" in app.get(stack.logical_id(f), {}).get("Properties", {})]
        return {function: count for function in reserving} if count else {}

    def finish(self, parameters: Mapping[str, str], outputs: Mapping[str, str], api_id: str) -> None:
        """Apply what infra/merge.json sets and chalice deploy does not."""
        app = stack.load_json(stack.APP_TEMPLATE)["Resources"]
        awslambda = self.session.client("lambda")
        for function, queue_output in SQS_CONSUMERS.items():
            logical_id = stack.logical_id(function)
            source = app[logical_id]["Properties"]["Events"][f"{logical_id}SqsEventSource"]["Properties"]
            name = stack.function_name(self.stage, function)
            mappings = [
                mapping
                for mapping in awslambda.list_event_source_mappings(EventSourceArn=outputs[queue_output])["EventSourceMappings"]
                if mapping["FunctionArn"].split(":")[6] == name
            ]
            if len(mappings) != 1:
                raise SystemExit(f"expected one event source mapping from {outputs[queue_output]} to {name}, "
                                 f"found {len(mappings)}")
            (mapping,) = mappings
            if mapping.get("FunctionResponseTypes", []) != source["FunctionResponseTypes"]:
                self.log(f"Reporting partial batch failures on {name}'s event source ...")
                awslambda.update_event_source_mapping(UUID=mapping["UUID"], FunctionResponseTypes=source["FunctionResponseTypes"])
        routes = app["WebsocketAPIStage"]["Properties"]["DefaultRouteSettings"]
        api_stage = stack.chalice_config(self.stage, project_dir=self.project_dir).api_gateway_stage
        self.session.client("apigatewayv2").update_stage(
            ApiId=api_id,
            StageName=api_stage,
            DefaultRouteSettings={  # each a {"Ref": parameter}
                "ThrottlingRateLimit": float(parameters[routes["ThrottlingRateLimit"]["Ref"]]),
                "ThrottlingBurstLimit": int(parameters[routes["ThrottlingBurstLimit"]["Ref"]]),
            },
        )
        self.access_logs(api_id, api_stage, outputs.get("WebsocketAccessLogGroupArn"))

    def access_logs(self, api_id: str, api_stage: str, log_group_arn: Optional[str]) -> None:
        """Log the WebSocket stage's access to ``log_group_arn`` in the packaged stage's format, or stop
        logging it when there is none (``WebsocketAccessLogging=false``): what ``chalice deploy`` cannot set."""
        apigateway = self.session.client("apigatewayv2")
        current = apigateway.get_stage(ApiId=api_id, StageName=api_stage).get("AccessLogSettings")
        if log_group_arn is None:
            if current:
                self.log(f"Turning off the access logs of the WebSocket stage {api_stage} ...")
                apigateway.delete_access_log_settings(ApiId=api_id, StageName=api_stage)
            return
        wanted = {"DestinationArn": log_group_arn, "Format": access_log_format()}
        if current == wanted:
            return
        self.log(f"Logging the WebSocket stage {api_stage}'s access to {log_group_arn} ...")
        try:
            apigateway.update_stage(ApiId=api_id, StageName=api_stage, AccessLogSettings=wanted)
        except ClientError as exc:
            if "CloudWatch Logs role ARN must be set" not in str(exc):
                raise
            raise SystemExit(
                f"API Gateway cannot write access logs in {self.region}: the account has no CloudWatch Logs role for "
                "API Gateway there. Set it once per Region (docs/deploy.md, 'Access logs'), or deploy with "
                "WEBSOCKET_ACCESS_LOGGING=false."
            ) from None

    def summary(self, outputs: Mapping[str, str]) -> Dict[str, str]:
        deployed = stack.load_json(self.project_dir / ".chalice" / "deployed" / f"{self.stage}.json")
        kinds = {r.get("resource_type"): r for r in deployed["resources"]}
        result = {stack.URL_OUTPUT: kinds["websocket_api"]["websocket_api_url"]}
        if "rest_api" in kinds:  # the REST API (/v1), as the packaged stack's EndpointURL output names it
            result[stack.REST_URL_OUTPUT] = kinds["rest_api"]["rest_api_url"]
        result.update(outputs)
        width = max(len(key) for key in result)
        for key, value in result.items():
            self.log(f"{key:<{width}}  {value}")
        return result

    # ---- tear down

    def destroy(self) -> None:
        name = stack.data_stack_name(self.stage)
        if (self.project_dir / ".chalice" / "deployed" / f"{self.stage}.json").exists():
            stack.prepare_project(self.stage, self.build, self.project_dir)
            self.chalice("delete", "--stage", self.stage)  # the functions, API and layer; the roles are the stack's
        status = self._stack_status(name)
        if status is None:
            self.log(f"{name} does not exist")
            return
        outputs = self.outputs(name)
        for bucket in (outputs.get("PageBucketName"), outputs.get("DocumentsBucketName")):
            if bucket:  # CloudFormation deletes no bucket that holds objects (the documents' uploads and chunks too)
                page.empty(self.session.client("s3"), bucket, log=self.log)
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
    parser.add_argument("command", choices=["deploy", "destroy", "check", "preflight"])
    parser.add_argument("--stage", required=True)
    parser.add_argument("--region", help="default: AWS_REGION, AWS_DEFAULT_REGION or the profile's")
    parser.add_argument("--profile")
    parser.add_argument("--param", action="append", default=[], metavar="Name=value")
    parser.add_argument("--cfn-role-arn", default=os.environ.get("CFN_ROLE_ARN") or None,
                        help="service role CloudFormation uses for the data stack (default: CFN_ROLE_ARN)")
    parser.add_argument("--stack-name", help="preflight: the packaged stack's name (default: agentstream-<stage>)")
    parser.add_argument("--runtime", default=stack.DEFAULT_RUNTIME,
                        help=f"the functions' Lambda runtime (default {stack.DEFAULT_RUNTIME})")
    args = parser.parse_args(argv)
    try:
        stack.chalice_config(args.stage)
        stack.check_runtime(args.runtime)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.command in ("deploy", "check"):
        try:
            parameters = gather_parameters(args.stage, args.param)
        except stack.ParameterError as exc:
            print(f"Parameters: {exc}", file=sys.stderr)
            return 2
        try:  # before anything is created: Lambda refuses a function whose environment is over 4 KB
            sizes = envsize.check(args.stage, parameters)
        except envsize.EnvironmentSizeError as exc:
            print(exc, file=sys.stderr)
            return 2
        if args.command == "check":
            print(json.dumps(parameters, indent=2))
            print("\n".join(sizes))
            return 0
    import boto3

    region = args.region or os.environ.get("AWS_REGION") or None  # else AWS_DEFAULT_REGION or the profile's
    session = boto3.session.Session(profile_name=args.profile, region_name=region)
    deployer = Deployer(session, args.stage, cfn_role_arn=args.cfn_role_arn, runtime=args.runtime)
    if args.command == "deploy":
        deployer.deploy(parameters)
    elif args.command == "preflight":
        deployer.preflight(args.stack_name or f"{stack.APP_NAME}-{args.stage}")
    else:
        deployer.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
