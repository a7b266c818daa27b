"""The CloudFormation path as docs/deploy.md walks it, recorded: docs/iam/cloudformation-deployer.json
allows every call the deployer makes, and needs every grant it holds.

Steps 2 and 3 of "A new account, from nothing and back" run as written, with the real AWS CLI (v1,
requirements-dev.txt) and ``make preflight``'s command, against a moto server whose request recorder
hears every process. moto's CloudFormation cannot run the SAM transform, so each ``aws cloudformation
deploy`` is handed the data stack (``stack.deploy_template``) instead of ``packaged.yaml``: the CLI
makes the same calls for any template (``awscli/customizations/cloudformation/deployer.py``), and with
``--role-arn`` what CloudFormation then does is the service role's, not the deployer's.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, List

import pytest
import yaml

from infra import stack
from tests.deploy import deployer_iam, recording
from tests.deploy.support import ACCOUNT, REGION
from tests.deploy.test_deploy_path import moto_server  # noqa: F401 - the fixture

AWS = Path(sys.executable).parent / "aws"
BUCKET = deployer_iam.BUCKET
STACK = "agentstream-prod"
TEMPLATE_BODY_LIMIT = 51_200  # awscli/customizations/cloudformation/deploy.py: larger needs --s3-bucket


def walkthrough(first: int, last: int) -> List[List[str]]:
    """The commands of steps ``first``..``last`` of docs/deploy.md's round trip, each as its words."""
    docs = (stack.ROOT / "docs" / "deploy.md").read_text()
    block = docs.split("## A new account, from nothing and back", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    commands: List[List[str]] = []
    step = 0
    for line in block.replace("\\\n", " ").splitlines():
        numbered = re.match(r"# (\d)\. ", line)
        if numbered:
            step = int(numbered.group(1))
        elif line.strip() and not line.lstrip().startswith("#") and first <= step <= last:
            commands.append(shlex.split(line))
    return commands


class _Yaml(yaml.SafeLoader):
    """``packaged.yaml`` as the CLI writes it, its short-form intrinsics (``!Ref``) kept as data."""


_Yaml.add_multi_constructor("!", lambda loader, tag, node: None)


@pytest.mark.usefixtures("moto_server")
@pytest.mark.filterwarnings("ignore::UserWarning")  # moto: "no CloudFormation support for AWS::CloudWatch::Alarm"
def test_the_cloudformation_deployers_policy_allows_every_call_of_the_walkthrough(packaged, tmp_path, monkeypatch):
    import boto3
    import moto.cloudformation.parsing
    from moto.cloudformation.models import ChangeSet
    from moto.dynamodb.models.table import Table

    original_update = moto.cloudformation.parsing.parse_and_update_resource

    def update(logical_id: str, resource_json: Any, resources_map: Any, *args: Any, **kwargs: Any) -> Any:
        """moto updates a resource its condition left out (never created) and fails: leave it out."""
        if resources_map[logical_id] is None:
            return None
        return original_update(logical_id, resource_json, resources_map, *args, **kwargs)

    def update_table(cls: Any, original_resource: Any, cloudformation_json: Any, **_: Any) -> Any:
        """CloudFormation's update of a table's deletion protection (moto updates no table)."""
        protected = cloudformation_json["Properties"].get("DeletionProtectionEnabled", False)
        original_resource.deletion_protection_enabled = protected in (True, "true")
        return original_resource

    conditions = stack.deploy_template("prod").get("Conditions", {})
    fixture_references = moto.cloudformation.parsing.get_references_from_template

    def condition_parameters(name: str, seen: frozenset = frozenset()) -> List[str]:
        text = json.dumps(conditions.get(name, {}))
        found = re.findall(r'"Ref": "([A-Za-z0-9]+)"', text)
        for other in set(re.findall(r'"Condition": "([A-Za-z0-9]+)"', text)) - seen:
            found += condition_parameters(other, seen | {name})
        return found

    def references(template: Any) -> List[str]:
        """A resource whose Fn::If tests a condition refers to the condition's parameters too (moto
        updates only resources that refer to a changed parameter: TableDeletionProtection=false)."""
        found = fixture_references(template)
        for name in re.findall(r'"Fn::If": \["([A-Za-z0-9]+)"', json.dumps(template)):
            found += condition_parameters(name)
        return found

    original_apply = ChangeSet.apply

    def apply(self: Any) -> None:
        """An executed change set gives the stack its template's outputs (moto keeps the old ones:
        none, for a new stack), which make publish-page reads."""
        original_apply(self)
        self.stack.template = self.template
        self.stack._parse_template()
        self.stack.output_map = self.stack._create_output_map()

    monkeypatch.setattr(ChangeSet, "apply", apply)
    monkeypatch.setattr(moto.cloudformation.parsing, "get_references_from_template", references)
    monkeypatch.setattr(moto.cloudformation.parsing, "parse_and_update_resource", update)
    monkeypatch.setattr(Table, "update_from_cloudformation_json", classmethod(update_table))
    # moto fetches a TemplateURL's object itself only from a "localhost" URL (moto/cloudformation/utils.py).
    endpoint = os.environ["AWS_ENDPOINT_URL"].replace("127.0.0.1", "localhost")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=endpoint, AWS_REGION=REGION, AWS_DEFAULT_REGION=REGION, AWS_ACCESS_KEY_ID="testing",
               AWS_SECRET_ACCESS_KEY="testing", AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
               ACCOUNT=ACCOUNT, BUCKET=BUCKET)
    work = tmp_path / "checkout"  # where the walkthrough runs: make package's output in build/package
    shutil.copytree(packaged["prod"], work / "build" / "package")
    standin_template = stack.deploy_template("prod")
    # The packaged stack's outputs that make publish-page reads: the page's, and Chalice's connect URL.
    connect = json.loads((packaged["prod"] / "sam.json").read_text())["Outputs"][stack.URL_OUTPUT]
    standin_template["Outputs"][stack.URL_OUTPUT] = connect
    standin = tmp_path / "standin.json"
    standin.write_text(json.dumps(standin_template))

    recorder = recording.MotoRecorder(endpoint, tmp_path / "recording.jsonl")
    recorder.start()  # a new account; then what step 1's administrator made, left out of the recording
    session = boto3.session.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    where = {} if REGION == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": REGION}}
    session.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET, **where)
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "cloudformation.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    session.client("iam", endpoint_url=endpoint).create_role(RoleName="agentstream-cloudformation",
                                                             AssumeRolePolicyDocument=json.dumps(trust))
    recorder.forget()

    def run(words: List[str]) -> None:
        for name, value in (("ACCOUNT", ACCOUNT), ("BUCKET", BUCKET)):
            words = [w.replace(f"${name}", value) for w in words]
        if words[:2] == ["make", "package"]:
            return  # the packaged fixture is make package's output
        if words[:2] == ["make", "preflight"]:  # what make preflight runs (test_make_preflight_runs_the_check_...)
            stage = words[2].split("=", 1)[1]
            words = [sys.executable, "-m", "infra.deploy", "preflight", "--stage", stage, "--stack-name", f"agentstream-{stage}"]
        elif words[:2] in (["make", "publish-page"], ["make", "empty-page"]):  # test_make_page_targets_...
            stage = words[2].split("=", 1)[1]
            words = [sys.executable, "-m", "infra.page", words[1].split("-")[0], "--stack-name", f"agentstream-{stage}"]
        elif words[0] == "aws":
            if words[1:3] == ["cloudformation", "deploy"]:
                words[words.index("--template-file") + 1] = str(standin)
            words = [str(AWS), *words[1:]]
        else:
            raise AssertionError(f"teach the test to run {words}")
        result = subprocess.run(words, cwd=stack.ROOT if words[0] == sys.executable else work, env=env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{words}:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"

    deploys = walkthrough(2, 2)
    for words in deploys:
        run(words)
    # An update runs Path 1's commands again, make preflight among them: it reads the stack's own resources.
    run(next(w for w in deploys if w[:2] == ["make", "preflight"]))
    for words in walkthrough(3, 3):
        run(words)
    calls = [recording.operation(request) for request in recorder.stop()]

    packaged_yaml = work / "build" / "package" / "packaged.yaml"
    template = yaml.load(packaged_yaml.read_text(), Loader=_Yaml)
    operations = [f"{call.service}:{call.operation}" for call in calls]
    # What each step really did: the artifacts and the template uploaded, a change set created and run
    # for the new stack and for the update, the stack deleted, preflight's look-ups.
    assert {"s3:CreateMultipartUpload", "s3:PutObject", "cloudformation:GetTemplateSummary", "cloudformation:DeleteStack",
            "lambda:GetFunction", "logs:DescribeLogGroups", "cloudformation:ListStackResources",
            "s3:ListObjectsV2", "s3:DeleteObjects"} <= set(operations)  # and the page published, then emptied
    page_keys = {c.params["Key"] for c in calls if c.operation == "PutObject" and "pagebucket" in c.params["Bucket"]}
    assert "index.html" in page_keys and "config.json" in page_keys
    assert operations.count("cloudformation:ExecuteChangeSet") == 2
    assert all("TemplateURL" in c.params for c in calls if c.operation == "CreateChangeSet")
    # The CLI deploys a template over 51,200 bytes only from S3: the walkthrough must pass --s3-bucket.
    assert packaged_yaml.stat().st_size > TEMPLATE_BODY_LIMIT
    docs = (stack.ROOT / "docs" / "deploy.md").read_text().replace("\\\n", " ")
    deploys = re.findall(r"^aws cloudformation deploy .*$", docs, re.M)
    assert deploys and all("--s3-bucket" in command for command in deploys), "every aws cloudformation deploy needs --s3-bucket"

    needed = (deployer_iam.recorded_checks(calls, REGION, ACCOUNT)
              + deployer_iam.cloudformation_path_unrecorded_checks(template, STACK, REGION, ACCOUNT))
    assert any(c.action == "iam:PassRole" for c in needed)  # --role-arn, on the change sets and on delete-stack
    policy = deployer_iam.policy("cloudformation-deployer", region=REGION, account=ACCOUNT, stage="prod")
    denied = deployer_iam.missing(policy, needed)
    assert not denied, "docs/iam/cloudformation-deployer.json does not allow:\n" + "\n".join(denied)
    needless = deployer_iam.needless(policy, needed)
    assert not needless, "docs/iam/cloudformation-deployer.json grants what nothing needs:\n" + "\n".join(needless)


@pytest.mark.parametrize("method, params, expected", [
    # S3's PutObject, UploadPart and CopyObject share method and path: the required members tell them apart.
    ("put_object", {"Key": "agentstream/prod/a1"},
     [("s3:PutObject", f"arn:aws:s3:::{BUCKET}/agentstream/prod/a1")]),
    ("upload_part", {"Key": "agentstream/prod/a1", "PartNumber": 1, "UploadId": "u1"},
     [("s3:PutObject", f"arn:aws:s3:::{BUCKET}/agentstream/prod/a1")]),
    ("create_multipart_upload", {"Key": "agentstream/prod/a1"}, [("s3:PutObject", f"arn:aws:s3:::{BUCKET}/agentstream/prod/a1")]),
    ("complete_multipart_upload", {"Key": "agentstream/prod/a1", "UploadId": "u1"},
     [("s3:PutObject", f"arn:aws:s3:::{BUCKET}/agentstream/prod/a1")]),
    ("head_object", {"Key": "agentstream/prod/a1"}, [("s3:GetObject", f"arn:aws:s3:::{BUCKET}/agentstream/prod/a1")]),
    ("list_objects_v2", {"Prefix": "agentstream/"}, [("s3:ListBucket", f"arn:aws:s3:::{BUCKET}")]),
])
def test_the_artifact_uploads_map_to_their_iam_checks(method, params, expected):
    from tests.deploy.test_deployer_policies import _sent

    call = recording.operation(_sent("s3", method, Bucket=BUCKET, **params))
    assert [(c.action, c.resource) for c in recording.checks(call, REGION, ACCOUNT)] == expected


def test_a_service_role_is_passed_on_delete_too_and_the_template_read_from_s3():
    from tests.deploy.test_deployer_policies import _sent

    role = f"arn:aws:iam::{ACCOUNT}:role/agentstream-cloudformation"
    passed = ("iam:PassRole", role, (("iam:PassedToService", "cloudformation.amazonaws.com"),))
    delete = recording.operation(_sent("cloudformation", "delete_stack", StackName=STACK, RoleARN=role))
    assert passed in {(c.action, c.resource, c.context) for c in recording.checks(delete, REGION, ACCOUNT)}
    url = f"https://s3.{REGION}.amazonaws.com/{BUCKET}/agentstream/prod/0a1b.template"  # the CLI's path-style URL
    create = recording.operation(_sent("cloudformation", "create_change_set", StackName=STACK, ChangeSetName="c1",
                                       TemplateURL=url, RoleARN=role))
    checks = {(c.action, c.resource, c.context) for c in recording.checks(create, REGION, ACCOUNT)}
    assert passed in checks and ("s3:GetObject", f"arn:aws:s3:::{BUCKET}/agentstream/prod/0a1b.template", ()) in checks
