"""The deployer's policies as docs/deploy.md documents them, and what deploying really needs.

The policies live in ``docs/iam/*.json`` (docs/deploy.md shows each verbatim). They are judged
against two kinds of evidence:

* the calls ``make deploy`` and ``make destroy`` make, recorded (``tests/deploy/recording.py``);
* the permissions CloudFormation's resource handlers need for every resource type of a template
  (the ``handlers`` of the resource provider schemas cfn-lint bundles): CloudFormation creates,
  reads, updates and deletes each resource with the caller's credentials, or with its service role.

IAM semantics here are the subset these policies use: Allow statements, ``Action`` with ``*``/``?``
wildcards (case-insensitive), ``Resource`` with wildcards (case-sensitive), and ``StringEquals`` /
``StringLike`` / ``ArnEquals`` / ``ArnLike`` conditions, which a request lacking the key fails.
"""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Set, Tuple

from infra import envsize, stack
from tests.deploy.recording import IMPLIED, STACK_ID, Call, Check, function_arn, templates
from tests.deploy.recording import checks as call_checks

DOCS = stack.ROOT / "docs"
POLICY_DIR = DOCS / "iam"
# docs/iam/<name>.json -> who holds it.
POLICIES = {
    "cloudformation-deployer": "the person or CI job on the CloudFormation path",
    "cloudformation-service-role": "CloudFormation's service role (--role-arn; CFN_ROLE_ARN for make deploy's stack)",
    "make-deploy": "the person running make deploy and make destroy",
}
BUCKET = "artifact-bucket"  # stands for BUCKET, the artifact bucket of the CloudFormation path
ARTIFACT_PREFIX = "agentstream"  # --s3-prefix agentstream/<stage> (docs/deploy.md, Path 1)

# The handlers CloudFormation runs for a stack operation. ``list`` is left out: CloudFormation's stack
# operations never call it (it serves Cloud Control's ListResources and resource discovery), so
# granting it would let the deployer enumerate the account for nothing.
HANDLERS = ("create", "read", "update", "delete")

# Resource types whose schema has no handler permissions (types CloudFormation still provisions
# itself, outside the registry), each with why its needs are known anyway. None in the templates today.
NO_HANDLERS: Dict[str, str] = {}


@dataclass(frozen=True)
class Feature:
    """Handler permissions that serve only a feature the templates do not use.

    A resource type's handler lists every permission any configuration of it might need; these
    belong to properties no resource of the type sets (``properties``, dotted for nested ones;
    ``test_features_left_out_are_unused`` checks that), or to kinds of resource the type cannot
    be given (``properties`` empty; ``reason`` says which). Granting them would reach other
    services' resources or the tables' data for nothing.
    """

    type: str
    properties: Tuple[str, ...]
    permissions: Tuple[str, ...]
    reason: str


KMS = ("kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey", "kms:ListAliases",
       "kms:RevokeGrant")
COGNITO_KMS = ("kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey",
               "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom", "kms:ReEncryptTo")
S3_METADATA = ("s3:CreateBucketMetadataTableConfiguration", "s3:GetBucketMetadataTableConfiguration",
               "s3:DeleteBucketMetadataTableConfiguration", "s3:UpdateBucketMetadataJournalTableConfiguration",
               "s3:UpdateBucketMetadataInventoryTableConfiguration", "s3:UpdateBucketMetadataAnnotationTableConfiguration",
               "s3tables:CreateNamespace", "s3tables:CreateTable", "s3tables:CreateTableBucket", "s3tables:GetTable",
               "s3tables:PutTableBucketPolicy", "s3tables:PutTableEncryption", "s3tables:PutTablePolicy",
               "s3tables:GetTableMetadataLocation", "s3tables:UpdateTableMetadataLocation")
FEATURES: Tuple[Feature, ...] = (
    Feature("AWS::Lambda::Function", ("VpcConfig",),
            ("ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcs", "ec2:DescribeNetworkInterfaces"),
            "attaching a function to a VPC, and waiting for its network interfaces on delete (Lambda developer guide, "
            "'Giving Lambda functions access to resources in an Amazon VPC')"),
    Feature("AWS::Lambda::Function", ("FileSystemConfigs",),
            ("elasticfilesystem:DescribeMountTargets", "s3files:ListMountTargets"), "mounting a file system"),
    Feature("AWS::Lambda::Function", ("KmsKeyArn",), KMS,
            "a customer managed key for the environment; without one Lambda uses its AWS managed key, whose key "
            "policy already lets the account's principals use it through Lambda"),
    Feature("AWS::Lambda::Function", ("CodeSigningConfigArn",), ("lambda:GetCodeSigningConfig",),
            "reading a code signing configuration, another resource"),
    Feature("AWS::Lambda::Function", ("CapacityProviderConfig",), ("lambda:PassCapacityProvider",),
            "running on a capacity provider (Lambda Managed Instances), another resource"),
    Feature("AWS::Lambda::Function", ("Code.S3ObjectVersion",), ("s3:GetObjectVersion",), "code from a versioned object"),
    Feature("AWS::Lambda::LayerVersion", ("Content.S3ObjectVersion",), ("s3:GetObjectVersion",),
            "content from a versioned object"),
    Feature("AWS::Lambda::EventSourceMapping", ("KmsKeyArn",), KMS, "a customer managed key for the filter criteria"),
    Feature("AWS::ApiGatewayV2::Api", ("BodyS3Location",), ("s3:getObject",), "importing an OpenAPI definition from S3"),
    Feature("AWS::ApiGatewayV2::Integration", ("CredentialsArn",), ("iam:PassRole",), "an integration that assumes a role"),
    Feature("AWS::ApiGateway::RestApi", ("BodyS3Location",), ("s3:GetObject",), "importing an OpenAPI definition from S3"),
    Feature("AWS::ApiGateway::RestApi", ("Policy",), ("apigateway:UpdateRestApiPolicy",),
            "a resource policy on the API (the REST API's callers are authorized by their tokens)"),
    Feature("AWS::ApiGateway::RestApi", (), ("iam:PassRole",),
            "an integration that assumes a role (credentials in its OpenAPI body): the REST API's one integration "
            "invokes its function through the function's resource-based permission"),
    Feature("AWS::IAM::Role", ("ManagedPolicyArns",), ("iam:AttachRolePolicy",),
            "attaching managed policies: the roles have inline policies only, and AttachRolePolicy on them "
            "could attach any policy at all"),
    Feature("AWS::IAM::Role", ("PermissionsBoundary",), ("iam:PutRolePermissionsBoundary", "iam:DeleteRolePermissionsBoundary"),
            "a permissions boundary"),
    Feature("AWS::Logs::LogGroup", ("DataProtectionPolicy",), ("logs:PutDataProtectionPolicy", "logs:DeleteDataProtectionPolicy"),
            "a data protection policy"),
    Feature("AWS::Logs::LogGroup", ("FieldIndexPolicies",), ("logs:PutIndexPolicy", "logs:DeleteIndexPolicy"), "field indexes"),
    Feature("AWS::Logs::LogGroup", ("ResourcePolicyDocument",), ("logs:PutResourcePolicy", "logs:DeleteResourcePolicy"),
            "a resource policy (an account-wide CloudWatch Logs setting)"),
    Feature("AWS::Logs::LogGroup", ("KmsKeyId",), ("logs:AssociateKmsKey", "logs:DisassociateKmsKey"), "a customer managed key"),
    Feature("AWS::Logs::LogGroup", ("BearerTokenAuthenticationEnabled",), ("logs:PutBearerTokenAuthentication",),
            "bearer-token ingestion"),
    Feature("AWS::Logs::LogGroup", ("DeletionProtectionEnabled",), ("logs:PutLogGroupDeletionProtection",),
            "deletion protection"),
    Feature("AWS::Logs::LogGroup", (), ("logs:CreateLogDelivery", "firehose:TagDeliveryStream", "s3:REST.PUT.OBJECT"),
            "delivering vended logs to Firehose or S3 (CloudWatch Logs user guide, 'Enabling logging from AWS services'): "
            "a log group of these templates only receives its function's or its API's logs"),
    Feature("AWS::DynamoDB::Table", ("SSESpecification.KMSMasterKeyId",), KMS,
            "a customer managed key; SSEEnabled without one uses the AWS managed key aws/dynamodb, whose key policy "
            "already lets the account's principals use it through DynamoDB"),
    Feature("AWS::DynamoDB::Table", ("KinesisStreamSpecification",),
            ("kinesis:DescribeStream", "kinesis:PutRecords", "dynamodb:EnableKinesisStreamingDestination",
             "dynamodb:DisableKinesisStreamingDestination", "dynamodb:UpdateKinesisStreamingDestination"),
            "streaming changes to Kinesis"),
    Feature("AWS::DynamoDB::Table", ("ImportSourceSpecification",),
            ("dynamodb:ImportTable", "dynamodb:DescribeImport", "s3:GetObject", "s3:GetObjectMetadata", "s3:ListBucket",
             "logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogGroups", "logs:DescribeLogStreams",
             "logs:PutLogEvents", "logs:PutRetentionPolicy"),
            "creating the table from an S3 import (DynamoDB developer guide, 'Requesting a table import')"),
    Feature("AWS::DynamoDB::Table", ("ResourcePolicy",), ("dynamodb:PutResourcePolicy", "dynamodb:DeleteResourcePolicy"),
            "a resource policy, which could open the table to other accounts"),
    Feature("AWS::DynamoDB::Table", (),
            ("dynamodb:CreateTableReplica", "dynamodb:AssociateTableReplica", "iam:CreateServiceLinkedRole",
             "dynamodb:BatchWriteItem", "dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query",
             "dynamodb:Scan", "dynamodb:UpdateItem"),
            "replicas and the item access they need (DynamoDB developer guide, global tables' IAM): the table "
            "handler shares them with global tables, but an AWS::DynamoDB::Table has no replicas, and the "
            "deployer has no business reading or writing the tables' items"),
    Feature("AWS::Cognito::UserPool", ("SmsConfiguration",), ("iam:PassRole",),
            "sending SMS through Amazon SNS with a role the pool assumes: the pool sends no SMS"),
    Feature("AWS::Cognito::UserPool", ("EmailConfiguration",), ("iam:CreateServiceLinkedRole",),
            "sending email through Amazon SES, for which Cognito creates its email service-linked role "
            "(AmazonCognitoIdpEmailServiceRolePolicy); without EmailConfiguration the pool sends Cognito's own email"),
    Feature("AWS::Cognito::UserPool", ("KeyConfiguration", "LambdaConfig.KMSKeyID"), COGNITO_KMS,
            "a customer managed KMS key for the pool's data or its custom sender triggers; without one Cognito "
            "encrypts with a key of its own"),
    Feature("AWS::Cognito::UserPoolClient", ("AnalyticsConfiguration",),
            ("iam:PassRole", "iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:CreateServiceLinkedRole"),
            "Amazon Pinpoint analytics, through a role the client passes and whose policy Cognito edits"),
    Feature("AWS::Cognito::UserPoolDomain", ("CustomDomainConfig",), ("cloudfront:updateDistribution",),
            "a custom domain, served through a CloudFront distribution; a prefix domain is Cognito's own"),
    Feature("AWS::Cognito::UserPoolDomain", (), COGNITO_KMS,
            "the pool's customer managed KMS key (UserPool KeyConfiguration, left out above): a domain has no key "
            "property, and the pool, without a key, has nothing encrypted with one of the account's keys"),
    Feature("AWS::Cognito::UserPoolGroup", ("RoleArn",), ("iam:PassRole", "iam:PutRolePolicy"),
            "an IAM role for the group's members (identity pools); the required group grants API access only"),
    Feature("AWS::S3::Bucket", ("ReplicationConfiguration",), ("iam:PassRole",),
            "replication, through a role S3 assumes: the page's bucket replicates nothing"),
    Feature("AWS::S3::Bucket", ("MetadataTableConfiguration", "MetadataConfiguration"), S3_METADATA,
            "S3 Metadata, which keeps the bucket's metadata in tables of an S3 table bucket, another resource"),
    Feature("AWS::CloudFront::Distribution", ("DistributionConfig.ConnectionMode", "DistributionConfig.TenantConfig"),
            ("cloudfront:CreateConnectionGroup", "cloudfront:GetConnectionGroup"),
            "a multi-tenant distribution and its connection group"),
    Feature("AWS::CloudFront::Distribution", ("DistributionConfig.Staging", "DistributionConfig.ContinuousDeploymentPolicyId"),
            ("cloudfront:UpdateDistributionWithStagingConfig",), "continuous deployment through a staging distribution"),
    Feature("AWS::CloudFront::Distribution", (), ("cloudfront:GetVpcOrigin",),
            "an origin in a VPC (an origin's VpcOriginConfig, another resource): the page's one origin is its bucket"),
    # The document pipeline (infra/documents.json).
    Feature("AWS::SNS::Topic", ("Subscription",), ("sns:Subscribe", "sns:Unsubscribe"),
            "subscriptions declared on the topic: its one subscriber, document_notices, subscribes itself (an "
            "AWS::SNS::Subscription of the packaged stack, chalice deploy's Subscribe on the other path)"),
    Feature("AWS::SNS::Topic", ("DataProtectionPolicy",), ("sns:PutDataProtectionPolicy",), "a data protection policy"),
    Feature("AWS::SNS::Topic", ("DeliveryStatusLogging",), ("iam:GetRole", "iam:PassRole"),
            "logging deliveries' status to CloudWatch Logs through roles SNS assumes"),
    Feature("AWS::SNS::Subscription", ("SubscriptionRoleArn",), ("iam:GetRole", "iam:PassRole"),
            "a Firehose subscription, which SNS delivers to through a role it assumes"),
    Feature("AWS::StepFunctions::StateMachine", ("DefinitionS3Location",), ("s3:GetObject", "s3:GetObjectVersion"),
            "a definition read from S3: the template carries it (Definition)"),
    Feature("AWS::StepFunctions::StateMachine", ("EncryptionConfiguration",), ("kms:DescribeKey", "kms:GenerateDataKey", "kms:Decrypt"),
            "a customer managed key for the executions' data; without one Step Functions uses a key of its own"),
    Feature("AWS::S3Vectors::VectorBucket", ("EncryptionConfiguration",), ("kms:GenerateDataKey",),
            "SSE-KMS for the vectors; without it S3 Vectors encrypts with SSE-S3"),
    Feature("AWS::S3Vectors::Index", ("EncryptionConfiguration",), ("kms:GenerateDataKey", "kms:Decrypt"),
            "an index encrypted with a customer managed key; without one it takes its bucket's SSE-S3"),
    Feature("AWS::Bedrock::KnowledgeBase", ("StorageConfiguration.PineconeConfiguration", "StorageConfiguration.MongoDbAtlasConfiguration"),
            ("bedrock:AssociateThirdPartyKnowledgeBase",), "a vector store of another vendor's (Pinecone, MongoDB Atlas)"),
    Feature("AWS::Bedrock::KnowledgeBase", (),
            ("kms:CreateGrant", "kms:RetireGrant", "kms:DescribeKey", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext",
             "kms:Encrypt", "kms:Decrypt"),
            "customer managed keys of the vector store's or a third party's credentials: the knowledge base's store is "
            "an S3 Vectors index of the stack's, encrypted with SSE-S3"),
    Feature("AWS::Bedrock::DataSource", ("ServerSideEncryptionConfiguration",), ("kms:GenerateDataKey", "kms:Decrypt"),
            "a customer managed key for the data source's transient data; without one Bedrock uses a key of its own"),
)

# Where a resource of each type lives (``{name}``: its name, given or generated), for the permissions
# of its own service. API Gateway's come from ``_apigateway``.
ARNS = {
    "AWS::DynamoDB::Table": "arn:aws:dynamodb:{region}:{account}:table/{name}",
    "AWS::SQS::Queue": "arn:aws:sqs:{region}:{account}:{name}",
    "AWS::CloudWatch::Alarm": "arn:aws:cloudwatch:{region}:{account}:alarm:{name}",
    "AWS::CloudWatch::Dashboard": "arn:aws:cloudwatch::{account}:dashboard/{name}",
    "AWS::IAM::Role": "arn:aws:iam::{account}:role/{name}",
    "AWS::Logs::LogGroup": "arn:aws:logs:{region}:{account}:log-group:{name}:*",
    "AWS::Lambda::Function": "arn:aws:lambda:{region}:{account}:function:{name}",
    "AWS::Lambda::LayerVersion": "arn:aws:lambda:{region}:{account}:layer:{name}:1",
    "AWS::Lambda::EventSourceMapping": "arn:aws:lambda:{region}:{account}:event-source-mapping:a1b2c3d4-0000-0000-0000-0000",
    "AWS::SSM::Parameter": "arn:aws:ssm:{region}:{account}:parameter/{name}",
    # Cognito generates a pool's id (<region>_<9 characters>); its app clients, domain and groups are
    # authorized on the pool (Service Authorization Reference, Amazon Cognito User Pools).
    "AWS::Cognito::UserPool": "arn:aws:cognito-idp:{region}:{account}:userpool/{region}_A1b2C3d4E",
    # A bucket's generated name is its stack's and logical id's, lowercased; CloudFront's ARNs hold ids it generates.
    "AWS::S3::Bucket": "arn:aws:s3:::{name}",
    "AWS::CloudFront::Distribution": "arn:aws:cloudfront::{account}:distribution/E2QWRUHEXAMPLE",
    "AWS::CloudFront::OriginAccessControl": "arn:aws:cloudfront::{account}:origin-access-control/E1A2B3C4EXAMPLE",
    "AWS::CloudFront::ResponseHeadersPolicy": "arn:aws:cloudfront::{account}:response-headers-policy/a1b2c3d4-5678-90ab-cdef-EXAMPLE",
    "AWS::SNS::Topic": "arn:aws:sns:{region}:{account}:{name}",
    "AWS::StepFunctions::StateMachine": "arn:aws:states:{region}:{account}:stateMachine:{name}",
    "AWS::S3Vectors::VectorBucket": "arn:aws:s3vectors:{region}:{account}:bucket/{name}",
    # Bedrock generates a knowledge base's id (10 characters); its data sources are authorized on it
    # (Service Authorization Reference, Amazon Bedrock: the data source actions' resource is knowledge-base).
    "AWS::Bedrock::KnowledgeBase": "arn:aws:bedrock:{region}:{account}:knowledge-base/KB12EXAMPL",
}
# S3 permissions a bucket's handlers need on its objects, not on the bucket.
S3_OBJECT_PERMISSIONS = {"s3:DeleteObject", "s3:PutObjectAcl"}
NAME_PROPERTIES = {
    "AWS::DynamoDB::Table": "TableName", "AWS::SQS::Queue": "QueueName", "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::CloudWatch::Dashboard": "DashboardName", "AWS::IAM::Role": "RoleName", "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::Lambda::Function": "FunctionName", "AWS::Lambda::LayerVersion": "LayerName", "AWS::SSM::Parameter": "Name",
    "AWS::SNS::Topic": "TopicName", "AWS::StepFunctions::StateMachine": "StateMachineName",
    "AWS::S3Vectors::VectorBucket": "VectorBucketName", "AWS::S3::Bucket": "BucketName",
}
# Actions that support no resource-level permission: authorized on "*" (Service Authorization Reference).
UNSCOPED = {"logs:DescribeResourcePolicies", "cognito-idp:CreateUserPool", "cognito-idp:DescribeUserPoolDomain",
            "bedrock:CreateKnowledgeBase"}
# The service each role of the stack's is passed to (iam:PassedToService), by the type that takes it as its RoleArn.
ROLE_TAKERS = {"AWS::StepFunctions::StateMachine": "states.amazonaws.com", "AWS::Bedrock::KnowledgeBase": "bedrock.amazonaws.com"}
API_COLLECTIONS = {"AWS::ApiGateway::Deployment": "deployments", "AWS::ApiGateway::Stage": "stages",
                   "AWS::ApiGatewayV2::Route": "routes", "AWS::ApiGatewayV2::Integration": "integrations",
                   "AWS::ApiGatewayV2::Deployment": "deployments", "AWS::ApiGatewayV2::Stage": "stages"}


# ---- the documented policies


def policy_text(name: str) -> str:
    return (POLICY_DIR / f"{name}.json").read_text()


def policy(name: str, *, region: str, account: str, stage: str, bucket: str = BUCKET,
           text: Optional[str] = None) -> Dict[str, Any]:
    """A documented policy with its placeholders filled in."""
    text = policy_text(name) if text is None else text
    for placeholder, value in (("REGION", region), ("ACCOUNT", account), ("STAGE", stage), ("BUCKET", bucket)):
        text = re.sub(rf"\b{placeholder}\b", value, text)
    return json.loads(text)


@lru_cache(maxsize=None)
def _pattern(pattern: str, ignore_case: bool) -> re.Pattern:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(regex, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def _wildcard(pattern: str, value: str, ignore_case: bool) -> bool:
    return _pattern(pattern, ignore_case).fullmatch(value) is not None


def _as_list(value: Any) -> List[Any]:
    return value if isinstance(value, list) else [value]


def _condition_holds(condition: Mapping[str, Mapping[str, Any]], context: Mapping[str, str]) -> bool:
    for operator, tests in condition.items():
        like = operator in ("StringLike", "ArnLike")
        if operator not in ("StringEquals", "StringLike", "ArnEquals", "ArnLike"):
            raise AssertionError(f"condition operator {operator}: teach tests/deploy/deployer_iam.py")
        for key, expected in tests.items():
            if key not in context:
                return False
            if not any(_wildcard(e, context[key], False) if like else e == context[key] for e in _as_list(expected)):
                return False
    return True


def allowing(document: Mapping[str, Any], check: Check) -> List[int]:
    """The indexes of the statements that allow ``check``."""
    found = []
    for index, statement in enumerate(document["Statement"]):
        if statement["Effect"] != "Allow" or "NotAction" in statement or "NotResource" in statement:
            raise AssertionError(f"statement {index}: only Allow with Action and Resource is understood here")
        if not any(_wildcard(a, check.action, True) for a in _as_list(statement["Action"])):
            continue
        if not any(_wildcard(r, check.resource, False) for r in _as_list(statement["Resource"])):
            continue
        if "Condition" in statement and not _condition_holds(statement["Condition"], dict(check.context)):
            continue
        found.append(index)
    return found


def allows(document: Mapping[str, Any], check: Check) -> bool:
    return bool(allowing(document, check))


def grants(document: Mapping[str, Any]) -> Iterator[Tuple[int, str]]:
    """Every (statement index, action) of a policy."""
    for index, statement in enumerate(document["Statement"]):
        for action in _as_list(statement["Action"]):
            yield index, action


def without(document: Mapping[str, Any], index: int, action: str) -> Dict[str, Any]:
    """The policy less one action of one statement (the statement goes when it was its only one)."""
    smaller = copy.deepcopy(dict(document))
    statement = smaller["Statement"][index]
    remaining = [a for a in _as_list(statement["Action"]) if a != action]
    if remaining:
        statement["Action"] = remaining
    else:
        del smaller["Statement"][index]
    return smaller


# ---- resource types and their handlers


@lru_cache(maxsize=None)
def handler_permissions(resource_type: str) -> Dict[str, Tuple[str, ...]]:
    """handler -> permissions, from the resource provider schema cfn-lint bundles (us-east-1)."""
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", resource_type).schema
    return {handler: tuple(spec.get("permissions", [])) for handler, spec in schema.get("handlers", {}).items()}


def feature_of(resource_type: str, permission: str) -> Optional[Feature]:
    for feature in FEATURES:
        if feature.type == resource_type and permission in feature.permissions:
            return feature
    return None


def packaged_artifacts(template: Dict[str, Any], stage: str, bucket: str = BUCKET) -> Dict[str, Any]:
    """The template as ``aws cloudformation package --s3-prefix agentstream/<stage>`` leaves it."""
    packaged = copy.deepcopy(template)
    for resource in packaged["Resources"].values():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str) and not properties[key].startswith("s3://"):
                properties[key] = f"s3://{bucket}/{ARTIFACT_PREFIX}/{stage}/{Path(properties[key]).name}"
    return packaged


def sam_expanded(template: Dict[str, Any], stage: str, region: str, bucket: str = BUCKET) -> Dict[str, Any]:
    """What CloudFormation creates for a SAM template: the transform run as CloudFormation runs it."""
    if "AWS::Serverless-2016-10-31" not in _as_list(template.get("Transform", [])):
        return template
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    # The Region only fills in AWS::Region; the templates name no managed policy, so none is looked up.
    translator = Translator({}, Parser(), boto_session=boto3.session.Session(region_name=region))
    return translator.translate(packaged_artifacts(template, stage, bucket), parameter_values={},
                                get_managed_policy_map=lambda: {})


def resources_by_type(template: Mapping[str, Any]) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """type -> logical id -> resource, every resource whatever its condition."""
    found: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for logical_id, resource in template["Resources"].items():
        found.setdefault(resource["Type"], {})[logical_id] = resource
    return found


def property_set(resource: Mapping[str, Any], dotted: str) -> bool:
    """Whether a resource sets a (nested) property, in any branch of an ``Fn::If``."""
    def walk(node: Any, path: Sequence[str]) -> bool:
        if isinstance(node, dict) and "Fn::If" in node:
            return any(walk(branch, path) for branch in node["Fn::If"][1:])
        if not path:
            return node is not None and node != {"Ref": "AWS::NoValue"}
        return isinstance(node, dict) and path[0] in node and walk(node[path[0]], path[1:])

    return walk(resource.get("Properties", {}), dotted.split("."))


class Stack:
    """Where the resources of a template would live once deployed as ``name``: plausible ARNs."""

    def __init__(self, template: Mapping[str, Any], name: str, region: str, account: str,
                 parameters: Optional[Mapping[str, str]] = None) -> None:
        self.template, self.name, self.region, self.account = template, name, region, account
        self.parameters = dict(parameters or {})

    def _string(self, value: Any) -> Optional[str]:
        """A literal, a ``Ref`` to a parameter or an ``Fn::Sub`` of them; None for anything else."""
        pseudo = {"AWS::StackName": self.name, "AWS::Region": self.region, "AWS::AccountId": self.account,
                  "AWS::Partition": "aws"}
        def ref(name: str) -> Optional[str]:
            if name in pseudo:
                return pseudo[name]
            if name in self.parameters:
                return self.parameters[name]
            if name in self.template["Resources"] and self.template["Resources"][name]["Type"] in NAME_PROPERTIES:
                return self.physical_name(name)  # the Ref of these types is their name
            return None

        if isinstance(value, str):
            return value
        if isinstance(value, dict) and set(value) == {"Ref"}:
            return ref(value["Ref"])
        if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], list):
            # A name ending in the stack id's first group (envsize.STACK_ID_GROUP): STACK_ID's here.
            template, variables = value["Fn::Sub"]
            if any(v != envsize.STACK_ID_GROUP for v in variables.values()):
                return None
            for variable in variables:
                template = template.replace("${" + variable + "}", STACK_ID.split("-")[0])
            return self._string({"Fn::Sub": template})
        if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
            names = re.findall(r"\$\{([^}!.]+)\}", value["Fn::Sub"])
            if all(ref(n) is not None for n in names) and not re.search(r"\$\{[^}]*\.", value["Fn::Sub"]):
                return re.sub(r"\$\{([^}!]+)\}", lambda m: str(ref(m.group(1))), value["Fn::Sub"])
        return None

    def physical_name(self, logical_id: str) -> str:
        resource = self.template["Resources"][logical_id]
        given = self._string(resource.get("Properties", {}).get(NAME_PROPERTIES.get(resource["Type"], "-"), None))
        generated = f"{self.name}-{logical_id}-A1B2C3D4E5F6"  # CloudFormation's generated names
        return given or (generated.lower() if resource["Type"] == "AWS::S3::Bucket" else generated)

    def arn(self, logical_id: str) -> str:
        resource_type = self.template["Resources"][logical_id]["Type"]
        if resource_type == "AWS::S3Vectors::Index":  # under its vector bucket: bucket/<name>/index/<name>
            properties = self.template["Resources"][logical_id]["Properties"]
            bucket = self._referenced(properties["VectorBucketArn"])
            return f"{self.arn(str(bucket))}/index/{self._string(properties['IndexName'])}"
        name = self.physical_name(logical_id)
        if resource_type == "AWS::SSM::Parameter":  # parameter/<name>, a hierarchical name without its leading /
            name = name.lstrip("/")
        return ARNS[resource_type].format(region=self.region, account=self.account, name=name)

    def _referenced(self, value: Any) -> Optional[str]:
        """The logical id a ``Ref`` or ``Fn::GetAtt`` names."""
        if isinstance(value, dict) and "Ref" in value and value["Ref"] in self.template["Resources"]:
            return value["Ref"]
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            name = target[0] if isinstance(target, list) else target.split(".")[0]
            return name if name in self.template["Resources"] else None
        if isinstance(value, dict) and isinstance(value.get("Fn::Sub"), str):  # "${Resource}": its Ref
            whole = re.fullmatch(r"\$\{([A-Za-z0-9]+)\}", value["Fn::Sub"])
            return whole.group(1) if whole and whole.group(1) in self.template["Resources"] else None
        return None

    def _function(self, value: Any) -> str:
        logical = self._referenced(value)
        if logical:
            return self.arn(logical)
        literal = self._string(value)
        if literal is None:
            raise AssertionError(f"cannot tell which function {value!r} names")
        return function_arn(literal, self.region, self.account)

    def _apigateway(self, resource: Mapping[str, Any], resource_type: str, method: str) -> str:
        # The WebSocket API's resources are under /apis, the REST API's (API Gateway v1) under /restapis.
        base = f"arn:aws:apigateway:{self.region}::/{'apis' if 'V2::' in resource_type else 'restapis'}"
        if resource_type in ("AWS::ApiGatewayV2::Api", "AWS::ApiGateway::RestApi"):
            return base if method == "POST" else f"{base}/a1b2c3d4e5"
        collection = API_COLLECTIONS.get(resource_type)
        if collection is None:
            raise AssertionError(f"{resource_type}: teach tests/deploy/deployer_iam.py its API Gateway paths")
        path = f"{base}/a1b2c3d4e5/{collection}"
        return path if method == "POST" else f"{path}/x1y2z3"

    def checks(self, logical_id: str, permission: str) -> List[Check]:
        """The plausible checks one handler permission makes for one resource."""
        resource = self.template["Resources"][logical_id]
        resource_type, properties = resource["Type"], resource.get("Properties", {})
        why = f"{resource_type} {logical_id}"
        prefix = {"stepfunctions": "states"}.get(resource_type.split("::")[1].lower(), resource_type.split("::")[1].lower())
        service = permission.split(":")[0].lower()
        if permission in UNSCOPED:
            return [Check(permission, "*", (), why)]
        if permission == "logs:DescribeLogGroups":  # see recording.resources
            return [Check(permission, f"arn:aws:logs:{self.region}:{self.account}:log-group::log-stream:", (), why)]
        if permission == "iam:PassRole" and resource_type == "AWS::Lambda::Function":
            role = self._referenced(properties["Role"])
            arn = self.arn(role) if role else self._string(properties["Role"])
            return [Check(permission, str(arn), (("iam:PassedToService", "lambda.amazonaws.com"),), why)]
        if permission == "iam:PassRole" and resource_type in ROLE_TAKERS:
            role = self._referenced(properties["RoleArn"])
            return [Check(permission, self.arn(str(role)), (("iam:PassedToService", ROLE_TAKERS[resource_type]),), why)]
        if resource_type == "AWS::SNS::Subscription" and service == "sns":  # on its topic (a subscription's ARN is under it)
            return [Check(permission, self.arn(str(self._referenced(properties["TopicArn"]))), (), why)]
        if resource_type == "AWS::S3Vectors::Index" and service == "s3vectors":
            return [Check(permission, self.arn(logical_id), (), why)]
        if resource_type == "AWS::Bedrock::DataSource" and service == "bedrock":  # on its knowledge base
            return [Check(permission, self.arn(str(self._referenced(properties["KnowledgeBaseId"]))), (), why)]
        if permission == "lambda:GetLayerVersion" and resource_type == "AWS::Lambda::Function":
            layers = []
            for layer in properties.get("Layers", []):
                logical = self._referenced(layer)
                layers.append(self.arn(logical) if logical else str(self._string(layer)))
            return [Check(permission, arn, (), why) for arn in layers]
        if permission.lower() == "s3:getobject" and resource_type in ("AWS::Lambda::Function", "AWS::Lambda::LayerVersion"):
            code = properties.get("Code") or properties.get("Content")
            return [Check(permission, f"arn:aws:s3:::{self._string(code['S3Bucket'])}/{self._string(code['S3Key'])}", (), why)]
        if resource_type == "AWS::Lambda::EventSourceMapping" and permission == "lambda:CreateEventSourceMapping":
            return [Check(permission, "*", (("lambda:FunctionArn", self._function(properties["FunctionName"])),), why)]
        if resource_type == "AWS::Lambda::Permission":
            return [Check(permission, self._function(properties["FunctionName"]), (), why)]
        if resource_type == "AWS::SQS::QueuePolicy":
            return [Check(permission, self.arn(str(self._referenced(q))), (), why) for q in properties["Queues"]]
        if resource_type.startswith(("AWS::ApiGatewayV2::", "AWS::ApiGateway::")) and service == "apigateway":
            method = permission.split(":")[1].upper()
            return [Check(permission, self._apigateway(resource, resource_type, method), (), why)]
        if resource_type.startswith("AWS::Cognito::") and service == "cognito-idp":  # on the pool, whatever the type
            pool = logical_id if resource_type == "AWS::Cognito::UserPool" else self._referenced(properties["UserPoolId"])
            return [Check(permission, self.arn(str(pool)), (), why)]
        if resource_type == "AWS::S3::BucketPolicy":  # on the bucket it is the policy of
            return [Check(permission, self.arn(str(self._referenced(properties["Bucket"]))), (), why)]
        if resource_type == "AWS::S3::Bucket" and permission in S3_OBJECT_PERMISSIONS:
            return [Check(permission, f"{self.arn(logical_id)}/index.html", (), why)]
        if resource_type in ARNS and service == prefix:  # AWS::<Service>::<Type>: its own service's permissions
            return [Check(permission, self.arn(logical_id), (), why)]
        raise AssertionError(f"{why} needs {permission}: teach tests/deploy/deployer_iam.py where it is authorized")


def handler_checks(template: Mapping[str, Any], stack_name: str, region: str, account: str,
                   parameters: Optional[Mapping[str, str]] = None) -> List[Check]:
    """Every check CloudFormation's handlers make to create, read, update and delete the stack's resources."""
    where = Stack(template, stack_name, region, account, parameters)
    found: List[Check] = []
    for resource_type, resources in resources_by_type(template).items():
        handlers = handler_permissions(resource_type)
        if not handlers:
            if resource_type not in NO_HANDLERS:
                raise AssertionError(f"{resource_type} has no handler permissions: say in NO_HANDLERS how its needs are known")
            continue
        permissions = sorted({p for h in HANDLERS for p in handlers.get(h, ())})
        for logical_id in resources:
            for permission in permissions:
                if feature_of(resource_type, permission) is None:
                    checks = where.checks(logical_id, permission)
                    found.extend(checks)
                    found.extend(Check(other, c.resource, (), f"{c.why}: {c.action} implies it")
                                 for c in checks for other in IMPLIED.get(c.action, ()))
    return found


def stack_arn(name: str, region: str, account: str) -> str:
    return f"arn:aws:cloudformation:{region}:{account}:stack/{name}/{STACK_ID}"


def missing(document: Mapping[str, Any], checks: Sequence[Check]) -> List[str]:
    """The checks a policy does not allow, readable."""
    lines = []
    for check in checks:
        if not allows(document, check):
            context = f" with {dict(check.context)}" if check.context else ""
            lines.append(f"{check.action} on {check.resource}{context} ({check.why})")
    return sorted(set(lines))


def needless(document: Mapping[str, Any], checks: Sequence[Check]) -> List[str]:
    """The grants (statement, action) the policy can lose with every check still allowed as before:
    those that are not the only grant allowing some check."""
    sole: Set[Tuple[int, str]] = set()
    for check in set(checks):
        pairs = {(index, action) for index in allowing(document, check)
                 for action in _as_list(document["Statement"][index]["Action"]) if _wildcard(action, check.action, True)}
        if len(pairs) == 1:
            sole |= pairs
    return [f"statement {index} ({document['Statement'][index].get('Sid', 'no Sid')}): {action}"
            for index, action in grants(document) if (index, action) not in sole]


# ---- make deploy and make destroy


def stack_parameters(call: Call) -> Dict[str, str]:
    """The parameter values a CreateStack or UpdateStack call gave (query protocol's member lists)."""
    values: Dict[str, str] = {}
    for key, value in call.params.items():
        match = re.fullmatch(r"Parameters\.member\.(\d+)\.ParameterKey", key)
        if match:
            values[value] = call.params.get(f"Parameters.member.{match.group(1)}.ParameterValue", "")
    return values


def recorded_checks(calls: Sequence[Call], region: str, account: str) -> List[Check]:
    """What a recorded run needs of its caller: every call as IAM authorizes it, and, for every
    template it handed CloudFormation without a service role, what CloudFormation then does with the
    caller's credentials: the handler permissions of that template's resource types."""
    found = [check for call in calls for check in call_checks(call, region, account)]
    for call, template in templates(calls):
        if not call.params.get("RoleARN"):
            found += handler_checks(template, call.params["StackName"], region, account, stack_parameters(call))
    return found


def unrecorded_checks(stage: str, region: str, account: str) -> List[Check]:
    """What ``infra/deploy.py`` calls only when something fails, so no successful run records it."""
    stack = stack_arn(f"agentstream-{stage}-data", region, account)
    return [Check("cloudformation:DescribeStackEvents", stack, (), "Deployer._wait reports a failed stack operation's events")]


# ---- the CloudFormation path (docs/deploy.md, Path 1)

SAM_TRANSFORM = "AWS::Serverless-2016-10-31"


def cloudformation_path_unrecorded_checks(packaged: Mapping[str, Any], stack_name: str, region: str,
                                          account: str) -> List[Check]:
    """What the CloudFormation path's caller needs that a recording against moto cannot show."""
    found = [
        # The AWS CLI's DeployFailedError (awscli/customizations/cloudformation/exceptions.py) tells the
        # deployer, when aws cloudformation deploy fails, to run aws cloudformation describe-stack-events.
        Check("cloudformation:DescribeStackEvents", stack_arn(stack_name, region, account), (),
              "aws cloudformation deploy names describe-stack-events when a deploy fails"),
    ]
    if SAM_TRANSFORM in _as_list(packaged.get("Transform", [])):
        # CloudFormation user guide, "Controlling access with IAM" (using-iam-template.html): "To allow
        # AWS::Serverless transforms to create a change set, the policy should include the
        # arn:aws:cloudformation:<region>:aws:transform/Serverless-2016-10-31 resource-level permission".
        transform = f"arn:aws:cloudformation:{region}:aws:transform/Serverless-2016-10-31"
        found.append(Check("cloudformation:CreateChangeSet", transform, (), "a change set of a template with the SAM transform"))
    return found
