"""moto's CloudFormation, taught to build the stack's Amazon Cognito and CloudFront resources.

moto 5 implements Cognito's API (``moto/cognitoidp``) but no CloudFormation model for its resource
types: its CloudFormation skips them with a warning, so a ``Ref`` of the user pool would resolve to
nothing. These models hand each resource's properties, as moto's CloudFormation resolved them, to
moto's own Cognito backend, the one the API serves, and give back what CloudFormation documents as
each type's ``Ref`` and attributes. The template's properties reach the pool and app client as they
are written; a test reads them back with the Cognito API, and moto then issues the pool's tokens.

CloudFront the same way (the page's distribution and origin access control, into moto's CloudFront,
whose API reads them back), but for the response headers policy, which moto's CloudFront does not
implement: it gets an id, and cfn-lint checks its properties against CloudFront's schema.

The document pipeline's resources (``infra/documents.json``) likewise: the vector bucket and index
into moto's S3 Vectors (which has no CloudFormation models); the knowledge base and its data source
get ids as Bedrock's (moto's Bedrock Agents takes no S3 Vectors store and has no data sources: the
app's calls to them go to the local Bedrock emulator, devserver/bedrock.py), and the
state machine into moto's Step Functions with its ``Definition`` and ``DefinitionSubstitutions``
resolved as CloudFormation resolves them (moto's own model reads ``DefinitionString`` only).

Importing this module registers the models (moto collects ``CloudFormationModel`` subclasses once
and caches them, so the cache is cleared here).
"""
from __future__ import annotations

from typing import Any, Dict

import json
import re

import moto.cloudformation.parsing as parsing
import moto.stepfunctions.models  # noqa: F401 - its model of AWS::StepFunctions::StateMachine first, so ours replaces it
from moto.cloudfront.models import cloudfront_backends
from moto.cognitoidp.models import cognitoidp_backends
from moto.core.utils import unix_time
from moto.moto_api._internal import mock_random
from moto.core.common_models import CloudFormationModel
from moto.s3vectors.models import s3vectors_backends
from moto.utilities.utils import get_partition
from moto.stepfunctions.models import stepfunctions_backends


def _backend(account_id: str, region_name: str) -> Any:
    return cognitoidp_backends[account_id][region_name]


class _Model:
    """What every model here shares: no name property, created at once. (A mixin: moto collects only
    the direct subclasses of ``CloudFormationModel``.)"""

    def __init__(self, created: Any, physical_resource_id: str) -> None:
        self.created = created  # what moto's Cognito backend made
        self.physical_resource_id = physical_resource_id

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return False

    def is_created(self) -> bool:
        return True


class UserPool(_Model, CloudFormationModel):
    """``Ref``: the pool's id; ``Fn::GetAtt``: Arn, ProviderName, ProviderURL, UserPoolId."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Cognito::UserPool"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr in ("Arn", "ProviderName", "ProviderURL", "UserPoolId")

    def get_cfn_attribute(self, attribute_name: str) -> str:
        pool = self.created
        provider = f"cognito-idp.{pool.region}.amazonaws.com/{pool.id}"
        return {"Arn": pool.arn, "ProviderName": provider, "ProviderURL": f"https://{provider}",
                "UserPoolId": pool.id}[attribute_name]

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: Dict[str, Any], account_id: str,
                                        region_name: str, **kwargs: Any) -> "UserPool":
        properties = dict(cloudformation_json["Properties"])
        name = properties.pop("UserPoolName", resource_name)
        pool = _backend(account_id, region_name).create_user_pool(name, properties)
        return cls(pool, pool.id)


class UserPoolClient(_Model, CloudFormationModel):
    """``Ref``: the app client's id."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Cognito::UserPoolClient"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: Dict[str, Any], account_id: str,
                                        region_name: str, **kwargs: Any) -> "UserPoolClient":
        properties = dict(cloudformation_json["Properties"])
        pool_id, generate_secret = properties.pop("UserPoolId"), properties.pop("GenerateSecret", False)
        properties.setdefault("ClientName", resource_name)
        client = _backend(account_id, region_name).create_user_pool_client(pool_id, generate_secret, properties)
        return cls(client, client.id)


class UserPoolDomain(_Model, CloudFormationModel):
    """``Ref``: the domain (its prefix)."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Cognito::UserPoolDomain"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: Dict[str, Any], account_id: str,
                                        region_name: str, **kwargs: Any) -> "UserPoolDomain":
        properties = cloudformation_json["Properties"]
        backend = _backend(account_id, region_name)
        domain = backend.create_user_pool_domain(properties["UserPoolId"], properties["Domain"],
                                                 properties.get("CustomDomainConfig"))
        return cls(domain, domain.domain)


class UserPoolGroup(_Model, CloudFormationModel):
    """``Ref``: the group's name."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Cognito::UserPoolGroup"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: Dict[str, Any], account_id: str,
                                        region_name: str, **kwargs: Any) -> "UserPoolGroup":
        properties = cloudformation_json["Properties"]
        group = _backend(account_id, region_name).create_group(
            properties["UserPoolId"], properties.get("GroupName", resource_name), properties.get("Description", ""),
            properties.get("RoleArn", ""), properties.get("Precedence", 0))
        return cls(group, group.group_name)


def _cloudfront(account_id: str) -> Any:
    return cloudfront_backends[account_id]["global"]


class _InPlace:
    """CloudFront updates these in place, keeping their ids (the stack's other resources refer to them);
    moto's CloudFormation would otherwise drop a model without an update from its resources."""

    @classmethod
    def update_from_cloudformation_json(cls, original_resource: Any, new_resource_name: str,
                                        cloudformation_json: Dict[str, Any], account_id: str, region_name: str) -> Any:
        return original_resource


def _items(values: Any) -> Dict[str, Any]:
    """A CloudFormation list as CloudFront's API shapes it."""
    return {"Quantity": len(values), "Items": list(values)}


class Distribution(_InPlace, _Model, CloudFormationModel):
    """``Ref``: the distribution's id; ``Fn::GetAtt``: DomainName, Id. The properties moto's
    CloudFront keeps, in its API's shape (it keeps no origin access control on an origin)."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::CloudFront::Distribution"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr in ("DomainName", "Id")

    def get_cfn_attribute(self, attribute_name: str) -> str:
        return {"DomainName": self.created.domain_name, "Id": self.created.distribution_id}[attribute_name]

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: Dict[str, Any], account_id: str,
                                        region_name: str, **kwargs: Any) -> "Distribution":
        given = cloudformation_json["Properties"]["DistributionConfig"]
        behavior = dict(given["DefaultCacheBehavior"])
        methods = behavior.pop("AllowedMethods", ["GET", "HEAD"])
        behavior["AllowedMethods"] = {**_items(methods), "CachedMethods": _items(behavior.pop("CachedMethods", methods))}
        config = {
            "CallerReference": f"{resource_name}-{unix_time()}-{mock_random.get_random_hex(8)}",
            **{key: given[key] for key in ("Comment", "Enabled", "DefaultRootObject", "PriceClass", "HttpVersion")
               if key in given},
            "IsIPV6Enabled": given.get("IPV6Enabled", True),
            "Origins": _items(given["Origins"]),
            "DefaultCacheBehavior": behavior,
        }
        distribution, _, _ = _cloudfront(account_id).create_distribution(config, [])
        return cls(distribution, distribution.distribution_id)


class OriginAccessControl(_InPlace, _Model, CloudFormationModel):
    """``Ref`` and ``Fn::GetAtt`` Id: the origin access control's id."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::CloudFront::OriginAccessControl"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "Id"

    def get_cfn_attribute(self, attribute_name: str) -> str:
        return self.created.id

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: Dict[str, Any], account_id: str,
                                        region_name: str, **kwargs: Any) -> "OriginAccessControl":
        control = _cloudfront(account_id).create_origin_access_control(
            cloudformation_json["Properties"]["OriginAccessControlConfig"])
        return cls(control, control.id)


class ResponseHeadersPolicy(_InPlace, _Model, CloudFormationModel):
    """``Ref``: an id (moto's CloudFront has no response headers policies)."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::CloudFront::ResponseHeadersPolicy"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: Dict[str, Any], account_id: str,
                                        region_name: str, **kwargs: Any) -> "ResponseHeadersPolicy":
        properties = cloudformation_json["Properties"]
        return cls(properties, str(mock_random.uuid4()))


def _bedrock_id() -> str:
    """An id as Amazon Bedrock generates them: 10 capital letters and digits."""
    return mock_random.get_random_string(length=10, include_digits=True, lower_case=False).upper()


class VectorBucket(_InPlace, _Model, CloudFormationModel):
    """``Ref`` and ``Fn::GetAtt`` VectorBucketArn: the vector bucket's ARN."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::S3Vectors::VectorBucket"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "VectorBucketArn"

    def get_cfn_attribute(self, attribute_name: str) -> str:
        return self.physical_resource_id

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: Dict[str, Any], account_id: str,
                                        region_name: str, **kwargs: Any) -> "VectorBucket":
        properties = cloudformation_json["Properties"]
        backend = s3vectors_backends[account_id][get_partition(region_name)]  # one per partition: the Region is the bucket's
        name = properties.get("VectorBucketName", resource_name.lower())
        backend.create_vector_bucket(region_name, name, properties.get("EncryptionConfiguration", {}))
        bucket = backend.get_vector_bucket(vector_bucket_name=name)
        return cls(bucket, bucket.vector_bucket_arn)


class VectorIndex(_InPlace, _Model, CloudFormationModel):
    """``Ref`` and ``Fn::GetAtt`` IndexArn: the index's ARN."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::S3Vectors::Index"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "IndexArn"

    def get_cfn_attribute(self, attribute_name: str) -> str:
        return self.physical_resource_id

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: Dict[str, Any], account_id: str,
                                        region_name: str, **kwargs: Any) -> "VectorIndex":
        properties = cloudformation_json["Properties"]
        backend = s3vectors_backends[account_id][get_partition(region_name)]  # one per partition: the Region is the bucket's
        bucket = backend.get_vector_bucket(vector_bucket_name=properties.get("VectorBucketName"),
                                           vector_bucket_arn=properties.get("VectorBucketArn"))
        name = properties.get("IndexName", resource_name.lower())
        backend.create_index(bucket.vector_bucket_name, bucket.vector_bucket_arn, name, properties["DataType"],
                             int(properties["Dimension"]), properties["DistanceMetric"])
        index = backend.get_index(bucket.vector_bucket_name, name, "")
        return cls(index, index.index_arn)


class KnowledgeBase(_InPlace, _Model, CloudFormationModel):
    """``Ref`` and ``Fn::GetAtt`` KnowledgeBaseId: its id; ``Fn::GetAtt`` KnowledgeBaseArn."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Bedrock::KnowledgeBase"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr in ("KnowledgeBaseId", "KnowledgeBaseArn")

    def get_cfn_attribute(self, attribute_name: str) -> str:
        return self.created[attribute_name]

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: Dict[str, Any], account_id: str,
                                        region_name: str, **kwargs: Any) -> "KnowledgeBase":
        properties = dict(cloudformation_json["Properties"])
        properties["KnowledgeBaseId"] = _bedrock_id()
        properties["KnowledgeBaseArn"] = (f"arn:{get_partition(region_name)}:bedrock:{region_name}:{account_id}:"
                                          f"knowledge-base/{properties['KnowledgeBaseId']}")
        return cls(properties, properties["KnowledgeBaseId"])


class DataSource(_InPlace, _Model, CloudFormationModel):
    """``Fn::GetAtt`` DataSourceId: an id as Bedrock's (10 characters); ``Ref``: ``<knowledge base id>|<it>``."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Bedrock::DataSource"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "DataSourceId"

    def get_cfn_attribute(self, attribute_name: str) -> str:
        return self.created["DataSourceId"]

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: Dict[str, Any], account_id: str,
                                        region_name: str, **kwargs: Any) -> "DataSource":
        properties = dict(cloudformation_json["Properties"])
        properties["DataSourceId"] = _bedrock_id()
        return cls(properties, f"{properties['KnowledgeBaseId']}|{properties['DataSourceId']}")


class StateMachine(_InPlace, _Model, CloudFormationModel):
    """``Ref`` and ``Fn::GetAtt`` Arn: the state machine's ARN; ``Fn::GetAtt`` Name. Its definition is
    ``Definition`` (an object) or ``DefinitionString``, with ``DefinitionSubstitutions`` filled in."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::StepFunctions::StateMachine"

    @staticmethod
    def cloudformation_name_type() -> str:
        return "StateMachineName"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr in ("Arn", "Name")

    def get_cfn_attribute(self, attribute_name: str) -> str:
        return {"Arn": self.created.arn, "Name": self.created.name}[attribute_name]

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: Dict[str, Any], account_id: str,
                                        region_name: str, **kwargs: Any) -> "StateMachine":
        properties = cloudformation_json["Properties"]
        definition = properties.get("DefinitionString") or json.dumps(properties.get("Definition", {}))
        substitutions = {key: str(value) for key, value in properties.get("DefinitionSubstitutions", {}).items()}
        definition = re.sub(r"\$\{([^}]+)\}", lambda m: substitutions.get(m.group(1), m.group(0)), definition)
        machine = stepfunctions_backends[account_id][region_name].create_state_machine(
            properties.get("StateMachineName", resource_name), definition, properties["RoleArn"],
            sm_type=properties.get("StateMachineType", "STANDARD"))
        return cls(machine, machine.arn)


for cache in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
    cache.cache_clear()
