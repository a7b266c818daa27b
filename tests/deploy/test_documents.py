"""The document pipeline's resources (``infra/documents.json``, ``infra/documents.asl.json``): merged into
both stacks, what each promises, the state machine's and the knowledge base's roles against what they
call, as moto's CloudFormation builds them, and the picture of the state machine in docs/documents.md
(``infra/asl_diagram.py``)."""
from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Set, Tuple

import boto3
import pytest
from moto import mock_aws

from infra import asl_diagram, envsize, stack
from tests.deploy.support import ACCOUNT, BACKENDS, REGION, STAGES, allows, deploy_stack, grants, role_policy

DOCUMENTS = stack.load_json(stack.DOCUMENTS_TEMPLATE)
ASL = stack.load_json(stack.PIPELINE_DEFINITION)
RESOURCES = DOCUMENTS["Resources"]
KNOWLEDGE_BASE_RESOURCES = ("DocumentsVectorBucket", "DocumentsVectorIndex", "KnowledgeBaseRole", "DocumentsKnowledgeBase",
                            "DocumentsDataSource")
OWN_KNOWLEDGE_BASE = {"KnowledgeBaseId": "KBOWN12345", "KnowledgeBaseDataSourceId": "DSOWN12345"}


@pytest.fixture(params=["packaged", "make deploy"])
def template(request: pytest.FixtureRequest) -> Dict[str, Any]:
    """Both stacks that carry the documents (the packaged one before Chalice adds its own, and make deploy's)."""
    return stack.merge_template("dev") if request.param == "packaged" else stack.deploy_template("dev")


# ---- the template


def test_both_stacks_carry_every_documents_resource_and_the_local_stack_reads_them(template):
    for name, resource in RESOURCES.items():
        assert template["Resources"][name]["Type"] == resource["Type"], name
    for section in ("Parameters", "Conditions", "Rules", "Outputs"):
        assert set(DOCUMENTS[section]) <= set(template[section]), section
    assert set(RESOURCES) <= set(stack.stage_resources()["Resources"])  # what devserver provisions from


def test_the_state_machine_is_the_asl_file_with_every_placeholder_substituted(template):
    machine = template["Resources"][stack.PIPELINE]["Properties"]
    assert machine["Definition"] == ASL  # one definition: infra/documents.asl.json
    assert "Definition" not in RESOURCES[stack.PIPELINE]["Properties"]  # not copied into documents.json
    assert machine["StateMachineType"] == "STANDARD"  # exactly-once steps, a year of history
    placeholders = set(re.findall(r"\$\{([A-Za-z]+)\}", json.dumps(ASL)))
    assert placeholders == set(machine["DefinitionSubstitutions"])
    assert machine["RoleArn"] == {"Fn::GetAtt": ["DocumentPipelineRole", "Arn"]}


def test_the_bucket_is_private_encrypted_and_takes_only_signed_posts(template):
    properties = template["Resources"]["DocumentsBucket"]["Properties"]
    assert properties["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    assert properties["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    (encryption,) = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    (cors,) = properties["CorsConfiguration"]["CorsRules"]
    assert cors["AllowedMethods"] == ["POST"]  # the browser's presigned POST; nothing is read back through CORS
    (lifecycle,) = properties["LifecycleConfiguration"]["Rules"]
    assert set(lifecycle) == {"Id", "Status", "AbortIncompleteMultipartUpload"}  # nothing expires but unfinished uploads
    statements = template["Resources"]["DocumentsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert [(s["Effect"], s["Condition"]) for s in statements] == [("Deny", {"Bool": {"aws:SecureTransport": "false"}})]


def test_uploads_and_only_uploads_notify_the_queue_which_only_the_bucket_may_send_to(template):
    bucket = template["Resources"]["DocumentsBucket"]
    (notification,) = bucket["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert notification["Event"] == "s3:ObjectCreated:*"
    assert notification["Filter"] == {"S3Key": {"Rules": [{"Name": "prefix", "Value": "uploads/"}]}}  # never the chunks (kb/)
    assert notification["Queue"] == {"Fn::GetAtt": ["UploadsQueue", "Arn"]}
    # S3 checks that it may send when the notification is set: the queue's policy first.
    assert bucket["DependsOn"] == "UploadsQueuePolicy"
    allow, deny = template["Resources"]["UploadsQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert (allow["Principal"], allow["Action"]) == ({"Service": "s3.amazonaws.com"}, "sqs:SendMessage")
    # The bucket by the name it is given (a Ref would be a cycle: the bucket waits for this policy).
    name, variables = bucket["Properties"]["BucketName"]["Fn::Sub"]
    assert allow["Condition"]["ArnEquals"]["aws:SourceArn"] == {"Fn::Sub": ["arn:${AWS::Partition}:s3:::" + name, variables]}
    assert allow["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert (deny["Effect"], deny["Condition"]) == ("Deny", {"Bool": {"aws:SecureTransport": "false"}})
    queue = template["Resources"]["UploadsQueue"]["Properties"]
    assert queue["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": ["UploadsDeadLetterQueue", "Arn"]}, "maxReceiveCount": 5}
    assert queue["SqsManagedSseEnabled"] is True  # SSE-SQS: S3 may send to it (an AWS managed KMS key it could not use)


def test_the_stacks_own_names_fit_every_service_for_every_stage():
    """Named after the stage and the stack's id (as page.json names its CloudFront resources): another
    stack, of the stage or of another account, never takes them; the bucket's is S3's, global."""
    names = {logical_id: RESOURCES[logical_id]["Properties"][key] for logical_id, key in (
        ("DocumentsBucket", "BucketName"), ("DocumentsTopic", "TopicName"), ("DocumentPipeline", "StateMachineName"),
        ("DocumentsVectorBucket", "VectorBucketName"), ("DocumentsKnowledgeBase", "Name"))}
    limits = {"DocumentsBucket": 63, "DocumentsTopic": 256, "DocumentPipeline": 80, "DocumentsVectorBucket": 63,
              "DocumentsKnowledgeBase": 100}
    assert stack.parameter_specs()["Stage"]["MaxLength"] == 20
    for logical_id, name in names.items():
        template, variables = name["Fn::Sub"]
        assert variables == {"Id": envsize.STACK_ID_GROUP}, logical_id
        longest = template.replace("${Stage}", "s" * 20).replace("${Id}", envsize.STACK_ID_EXAMPLE.split("-")[0])
        assert len(longest) <= limits[logical_id] and re.fullmatch(r"[a-z0-9][a-z0-9-]+[a-z0-9]", longest), logical_id


def test_the_tables_and_their_indexes_are_keyed_as_the_stores_read_them(template):
    from chalicelib.store import connections, documents

    table = template["Resources"]["DocumentsTable"]
    properties = table["Properties"]
    assert properties["KeySchema"] == [{"AttributeName": "documentId", "KeyType": "HASH"}]
    (by_owner,) = properties["GlobalSecondaryIndexes"]
    assert by_owner["IndexName"] == documents.BY_OWNER
    assert by_owner["KeySchema"] == [{"AttributeName": "owner", "KeyType": "HASH"}, {"AttributeName": "createdAt", "KeyType": "RANGE"}]
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["SSESpecification"] == {"SSEEnabled": True} and properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["DeletionProtectionEnabled"] == {"Fn::If": ["ProtectTables", True, False]}
    assert table["UpdateReplacePolicy"] == "Retain"
    # The notices subscriber finds a user's connections by the attribute the connection store writes.
    (by_user,) = template["Resources"]["ConnectionsTable"]["Properties"]["GlobalSecondaryIndexes"]
    assert by_user["IndexName"] == connections.BY_USER
    assert by_user["KeySchema"] == [{"AttributeName": "userId", "KeyType": "HASH"}]
    assert by_user["Projection"] == {"ProjectionType": "KEYS_ONLY"}  # the connection ids, nothing more
    assert "userId=conn.user_id" in (stack.ROOT / "chalicelib" / "store" / "connections.py").read_text()


def test_the_knowledge_base_is_the_stacks_own_on_s3_vectors_unless_one_is_given(template):
    conditions = template["Conditions"]
    assert conditions["CreatesKnowledgeBase"] == {"Fn::Equals": [{"Ref": "KnowledgeBaseId"}, ""]}
    for name in KNOWLEDGE_BASE_RESOURCES:
        assert template["Resources"][name]["Condition"] == "CreatesKnowledgeBase", name
    knowledge_base = template["Resources"]["DocumentsKnowledgeBase"]["Properties"]
    assert knowledge_base["StorageConfiguration"] == {
        "Type": "S3_VECTORS", "S3VectorsConfiguration": {"IndexArn": {"Fn::GetAtt": ["DocumentsVectorIndex", "IndexArn"]}}}
    vector = knowledge_base["KnowledgeBaseConfiguration"]["VectorKnowledgeBaseConfiguration"]
    index = template["Resources"]["DocumentsVectorIndex"]["Properties"]
    # The index holds vectors of the size the model makes.
    assert vector["EmbeddingModelConfiguration"]["BedrockEmbeddingModelConfiguration"]["Dimensions"] == index["Dimension"] == {
        "Ref": "EmbeddingDimensions"}
    assert (index["DataType"], index["DistanceMetric"]) == ("float32", "cosine")
    # Bedrock's chunk text and metadata are stored, never filtered on: S3 Vectors' filterable metadata is small.
    assert index["MetadataConfiguration"]["NonFilterableMetadataKeys"] == ["AMAZON_BEDROCK_TEXT", "AMAZON_BEDROCK_METADATA"]
    source = template["Resources"]["DocumentsDataSource"]["Properties"]
    assert source["DataSourceConfiguration"] == {
        "Type": "S3", "S3Configuration": {"BucketArn": {"Fn::GetAtt": ["DocumentsBucket", "Arn"]}, "InclusionPrefixes": ["kb/"]}}
    # The pipeline chunks: one object under kb/ is one chunk, with its .metadata.json sidecar.
    assert source["VectorIngestionConfiguration"] == {"ChunkingConfiguration": {"ChunkingStrategy": "NONE"}}


def test_cfn_lint_knows_the_vector_store_the_knowledge_base_uses():
    """S3 Vectors, the cheapest vector store Bedrock offers (no minimum charge), as cfn-lint's bundled schemas know it."""
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    def schema(kind: str) -> Dict[str, Any]:
        return PROVIDER_SCHEMA_MANAGER.get_resource_schema(REGION, kind).schema

    assert "S3_VECTORS" in schema("AWS::Bedrock::KnowledgeBase")["definitions"]["KnowledgeBaseStorageType"]["enum"]
    for kind in ("AWS::S3Vectors::VectorBucket", "AWS::S3Vectors::Index"):
        assert schema(kind)["handlers"], kind


@pytest.mark.parametrize("given, problem", [
    ({"KnowledgeBaseId": "KBOWN12345"}, "KnowledgeBaseId and KnowledgeBaseDataSourceId go together"),
    ({"KnowledgeBaseDataSourceId": "DSOWN12345"}, "KnowledgeBaseId and KnowledgeBaseDataSourceId go together"),
    ({**OWN_KNOWLEDGE_BASE, "KnowledgeBaseId": "kb-*"}, "KnowledgeBaseId='kb-*' does not match"),
    ({"EmbeddingModelId": "amazon.*"}, "EmbeddingModelId='amazon.*' does not match"),
    ({"EmbeddingDimensions": "768"}, "EmbeddingDimensions='768' is not one of"),
])
def test_knowledge_base_parameters_are_refused_as_cloudformation_would(given, problem):
    with pytest.raises(stack.ParameterError, match=re.escape(problem)):
        stack.resolve_parameters("dev", {**BACKENDS["agent"], **given})


def test_knowledge_base_parameters_have_defaults_that_create_one():
    values = stack.resolve_parameters("dev", BACKENDS["agent"])
    assert (values["KnowledgeBaseId"], values["KnowledgeBaseDataSourceId"]) == ("", "")
    assert (values["EmbeddingModelId"], values["EmbeddingDimensions"]) == ("amazon.titan-embed-text-v2:0", "1024")
    assert stack.resolve_parameters("dev", {**BACKENDS["agent"], **OWN_KNOWLEDGE_BASE})["KnowledgeBaseId"] == "KBOWN12345"


# ---- the state machine's role against what its states call

TASK_ACTIONS = {  # a Task's Resource -> (the IAM action, the parameter naming the resource it acts on)
    "arn:aws:states:::lambda:invoke": ("lambda:InvokeFunction", "FunctionName"),
    "arn:aws:states:::sns:publish": ("sns:Publish", "TopicArn"),
    "arn:aws:states:::dynamodb:updateItem": ("dynamodb:UpdateItem", "TableName"),
    "arn:aws:states:::aws-sdk:bedrockagent:startIngestionJob": ("bedrock:StartIngestionJob", "KnowledgeBaseId"),
    "arn:aws:states:::aws-sdk:bedrockagent:getIngestionJob": ("bedrock:GetIngestionJob", "KnowledgeBaseId"),
}


def _arn(action: str, name: str) -> str:
    """The ARN IAM authorizes a task's call on (Service Authorization Reference), from what its parameter holds."""
    if action == "dynamodb:UpdateItem":
        return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"
    if action.startswith("bedrock:"):
        return f"arn:aws:bedrock:{REGION}:{ACCOUNT}:knowledge-base/{name}"
    return name  # a function's or a topic's ARN already


def _task_calls(definition: Dict[str, Any]) -> Set[Tuple[str, str]]:
    calls = set()
    for name, state in definition["States"].items():
        if state["Type"] == "Task":
            assert state["Resource"] in TASK_ACTIONS, f"{name}: teach this test the IAM action of {state['Resource']}"
            action, parameter = TASK_ACTIONS[state["Resource"]]
            calls.add((action, _arn(action, state["Parameters"][parameter])))
    return calls


def _built(parameters: Dict[str, str]) -> Tuple[Dict[str, str], Dict[str, Any], Dict[str, Any], Dict[str, Any]]:
    """moto's CloudFormation builds make deploy's stack: its outputs, the state machine's definition as
    stored (substituted), and the pipeline's and the knowledge base's role policies ({} when none)."""
    outputs, _ = deploy_stack(stack.resolve_parameters("dev", parameters))
    definition = json.loads(boto3.client("stepfunctions", region_name=REGION).describe_state_machine(
        stateMachineArn=outputs["DocumentPipelineArn"])["definition"])
    cloudformation, iam = boto3.client("cloudformation", region_name=REGION), boto3.client("iam", region_name=REGION)
    roles: Dict[str, Any] = {}
    for logical_id, policy_name in (("DocumentPipelineRole", "document-pipeline"), ("KnowledgeBaseRole", "knowledge-base")):
        found = [r for r in cloudformation.list_stack_resources(StackName=stack.data_stack_name("dev"))["StackResourceSummaries"]
                 if r["LogicalResourceId"] == logical_id]
        if found:
            arn = iam.get_role(RoleName=found[0]["PhysicalResourceId"])["Role"]["Arn"]
            roles[logical_id] = role_policy(iam, arn, policy_name)
    return outputs, definition, roles.get("DocumentPipelineRole", {}), roles.get("KnowledgeBaseRole", {})


def _unused_and_denied(policy: Dict[str, Any], calls: Set[Tuple[str, str]]) -> List[str]:
    problems = [f"denied {call}" for call in sorted(calls) if not allows(policy, *call)]
    for single in grants(policy):
        if not any(allows(single, *call) for call in calls):
            problems.append(f"unused {single['Statement'][0]}")
    return problems


@pytest.mark.parametrize("given", [{}, OWN_KNOWLEDGE_BASE], ids=["own knowledge base", "knowledge base given"])
def test_the_pipelines_role_allows_exactly_what_its_states_call(given):
    with mock_aws():
        outputs, definition, pipeline, knowledge_base = _built({**BACKENDS["agent"], **given})
    calls = _task_calls(definition)
    assert not _unused_and_denied(pipeline, calls)
    knowledge_base_id = given.get("KnowledgeBaseId") or outputs["DocumentsKnowledgeBaseId"]
    assert outputs["DocumentsKnowledgeBaseId"] == knowledge_base_id
    assert outputs["DocumentsDataSourceId"] == given.get("KnowledgeBaseDataSourceId", outputs["DocumentsDataSourceId"])
    assert ("bedrock:StartIngestionJob", f"arn:aws:bedrock:{REGION}:{ACCOUNT}:knowledge-base/{knowledge_base_id}") in calls
    start = definition["States"]["StartIngestion"]["Parameters"]
    assert (start["KnowledgeBaseId"], start["DataSourceId"]) == (knowledge_base_id, outputs["DocumentsDataSourceId"])
    functions = {state["Parameters"]["FunctionName"] for state in definition["States"].values()
                 if state.get("Resource") == "arn:aws:states:::lambda:invoke"}
    assert functions == {f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{stack.function_name('dev', f)}"
                         for f in ("document_extract", "document_analyse")}
    assert bool(knowledge_base) == (not given)  # the stack's own knowledge base has a role of the stack's


def test_the_knowledge_bases_role_reads_only_the_chunks_and_writes_only_its_index():
    with mock_aws():
        outputs, _, _, role = _built(BACKENDS["agent"])
        vectors = boto3.client("s3vectors", region_name=REGION)
        (bucket,) = vectors.list_vector_buckets()["vectorBuckets"]
        index = vectors.list_indexes(vectorBucketName=bucket["vectorBucketName"])["indexes"][0]["indexArn"]
    bucket = f"arn:aws:s3:::{outputs['DocumentsBucketName']}"
    model = f"arn:aws:bedrock:{REGION}::foundation-model/amazon.titan-embed-text-v2:0"
    account = {"aws:ResourceAccount": ACCOUNT}
    chunk = f"{bucket}/kb/0123abcd/d-1/chunk-00001.txt"
    calls = [("s3:ListBucket", bucket, {**account, "s3:prefix": "kb/"}), ("s3:GetObject", chunk, account),
             ("s3:GetObject", f"{chunk}.metadata.json", account), ("bedrock:InvokeModel", model, {})]
    calls += [(f"s3vectors:{action}", index, {}) for action in ("GetIndex", "PutVectors", "GetVectors", "DeleteVectors",
                                                                  "QueryVectors")]
    for action, resource, context in calls:
        assert allows(role, action, resource, context), (action, resource)
    # Not the uploads, not another prefix, not another model or index.
    assert not allows(role, "s3:GetObject", f"{bucket}/uploads/0123abcd/d-1/notes.md", account)
    assert not allows(role, "s3:ListBucket", bucket, {**account, "s3:prefix": "uploads/"})
    assert not allows(role, "bedrock:InvokeModel", model.replace("titan-embed-text-v2:0", "nova-pro-v1:0"))
    assert not allows(role, "s3vectors:PutVectors", index.replace("/index/documents", "/index/other"))
    assert len(list(grants(role))) == len(calls) - 1  # the two GetObjects are one grant: nothing granted beyond


def test_the_stack_builds_the_documents_resources_the_app_is_configured_with():
    with mock_aws():
        outputs, _ = deploy_stack(stack.resolve_parameters("dev", BACKENDS["agent"]))
        env = stack.environment_from_outputs(outputs)
        s3, sns = boto3.client("s3", region_name=REGION), boto3.client("sns", region_name=REGION)
        stack_id = boto3.client("cloudformation", region_name=REGION).describe_stacks(
            StackName=stack.data_stack_name("dev"))["Stacks"][0]["StackId"]
        own = f"agentstream-dev-documents-{stack_id.rsplit('/', 1)[1].split('-')[0]}"
        assert env["DOCUMENTS_BUCKET"] == outputs["DocumentsBucketName"] == own
        s3.head_bucket(Bucket=env["DOCUMENTS_BUCKET"])  # it exists, by that name
        assert env["DOCUMENTS_TABLE"] == outputs["DocumentsTableName"]
        assert env["DOCUMENT_PIPELINE_ARN"] == outputs["DocumentPipelineArn"] == f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{own}"
        assert env["KNOWLEDGE_BASE_ID"] == outputs["DocumentsKnowledgeBaseId"]
        sns.get_topic_attributes(TopicArn=outputs["DocumentsTopicArn"])
        # chalice deploy is told the event sources (a queue's ARN, a topic's name: app.py's decorators), the functions never.
        assert stack.event_source_environment(outputs) == {"UPLOADS_QUEUE_ARN": outputs["UploadsQueueArn"], "DOCUMENTS_TOPIC": own}
        assert not set(stack.EVENT_SOURCE_OUTPUTS) & set(env)


# ---- the picture (docs/documents.md)


def test_docs_documents_md_shows_the_state_machine_as_it_is():
    assert asl_diagram.main(["--check"]) == 0, "docs/documents.md's picture is stale: run make diagram"


def test_a_stale_picture_is_caught_and_make_diagram_redraws_it(tmp_path, capsys):
    stale = tmp_path / "documents.md"
    stale.write_text(asl_diagram.DOCUMENT.read_text().replace("NotifyUploaded", "NotifyUpload", 1))
    assert asl_diagram.main(["--check"], path=stale) == 1
    assert "run make diagram" in capsys.readouterr().err
    assert asl_diagram.main([], path=stale) == 0
    assert stale.read_text() == asl_diagram.DOCUMENT.read_text()
    with pytest.raises(ValueError, match="needs one <!-- asl:begin --> line"):
        asl_diagram.embed("# no markers\n", asl_diagram.render())


def test_the_picture_draws_every_state_transition_catch_and_retry():
    chart = asl_diagram.render_flowchart(ASL)
    ids: Dict[str, str] = {}
    for name in ASL["States"]:
        assert re.search(rf"^  {re.escape(asl_diagram.node_id(name, ids))}[\[{{(]", chart, re.M), name
    solid, dashed = chart.count(" -->"), chart.count(" -.->")
    expected_solid = 1 + sum(len(s.get("Choices", [])) + ("Default" in s) + ("Next" in s) + bool(s.get("End"))
                             for s in ASL["States"].values())
    assert (solid, dashed) == (expected_solid, sum(len(s.get("Catch", [])) for s in ASL["States"].values()))
    assert '"$.action == #quot;delete#quot;"' in chart  # a Choice's edge says its condition
    assert "-.->|\"catch States.ALL\"| StepFailed" in chart
    assert "retry 12× from 2 s, backoff ×1.5, at most 30 s, full jitter on:" in chart  # StartIngestion's ConflictException
    assert "Failed([\"Failed<br/>fail: DocumentFailed\"])" in chart


def test_conditions_read_as_their_rules_say():
    assert asl_diagram.condition({"Variable": "$.n", "NumericLessThanPath": "$.m"}) == "$.n < $.m"
    assert asl_diagram.condition({"Not": {"Variable": "$.x", "IsPresent": True}}) == "not $.x is present"
    assert asl_diagram.condition({"Variable": "$.x", "IsNull": False}) == "$.x is not null"
    assert asl_diagram.condition({"Or": [{"Variable": "$.a", "BooleanEquals": False},
                                         {"Variable": "$.s", "StringMatches": "*.pdf"}]}) == '($.a == false or $.s matches "*.pdf")'
    with pytest.raises(ValueError, match="cannot read"):
        asl_diagram.condition({"Variable": "$.a", "Sometimes": 1})


@pytest.mark.parametrize("stage", STAGES)
def test_the_packaged_function_names_are_the_ones_the_state_machine_invokes(stage, templates):
    substitutions = templates[stage]["Resources"][stack.PIPELINE]["Properties"]["DefinitionSubstitutions"]
    for placeholder, function in (("ExtractFunctionArn", "DocumentExtract"), ("AnalyseFunctionArn", "DocumentAnalyse")):
        name = templates[stage]["Resources"][function]["Properties"]["FunctionName"]["Fn::Sub"]
        assert substitutions[placeholder]["Fn::Sub"].endswith(f":function:{name}"), placeholder
    # Named, not generated: DOCUMENTS_TOPIC is a name (Chalice's on_sns_message takes one), the stack's own.
    assert templates[stage]["Resources"]["DocumentsTopic"]["Properties"]["TopicName"] == {
        "Fn::Sub": ["agentstream-${Stage}-documents-${Id}", {"Id": envsize.STACK_ID_GROUP}]}


# What each function's code reads of the documents' settings (chalicelib/documents/*.py), which only its own
# environment (the stage's and its own variables, as each function is deployed) can give it.
NEEDS = {
    "websocket_message": ("documents_bucket", "documents_table", "document_pipeline_arn"),  # actions.py
    "document_uploads": ("documents_bucket", "documents_table", "document_pipeline_arn"),  # pipeline.py, actions.start_pipeline
    "document_notices": ("documents_table", "websocket_api_id"),  # notices.py
    "document_extract": ("documents_bucket",),
    "document_analyse": ("knowledge_base_id", "model_id"),  # the backend's retrieval (converse) and model
    "turn_worker": ("knowledge_base_id", "model_id"),
}


def test_each_function_is_deployed_with_the_documents_settings_it_reads(tmp_path):
    """Each function as make deploy configures it (render_project: the stage's variables and its own)."""
    from chalicelib.settings import Settings

    with mock_aws():
        parameters = stack.resolve_parameters("dev", BACKENDS["converse-model"])
        outputs, _ = deploy_stack(parameters, websocket_api_id="a1b2c3d4e5")
    stack.render_project("dev", outputs, tmp_path / "p")
    config = json.loads((tmp_path / "p" / ".chalice" / "config.json").read_text())["stages"]["dev"]
    for function, needed in NEEDS.items():
        env = {**config["environment_variables"], **config["lambda_functions"][function].get("environment_variables", {})}
        settings = Settings.from_env({**env, "AWS_REGION": REGION})
        assert all(getattr(settings, name) for name in needed), (function, {name: getattr(settings, name) for name in needed})
