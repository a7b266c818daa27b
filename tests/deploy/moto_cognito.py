"""moto's CloudFormation, taught to build the stack's Amazon Cognito resources.

moto 5 implements Cognito's API (``moto/cognitoidp``) but no CloudFormation model for its resource
types: its CloudFormation skips them with a warning, so a ``Ref`` of the user pool would resolve to
nothing. These models hand each resource's properties, as moto's CloudFormation resolved them, to
moto's own Cognito backend, the one the API serves, and give back what CloudFormation documents as
each type's ``Ref`` and attributes. The template's properties reach the pool and app client as they
are written; a test reads them back with the Cognito API, and moto then issues the pool's tokens.

Importing this module registers the models (moto collects ``CloudFormationModel`` subclasses once
and caches them, so the cache is cleared here).
"""
from __future__ import annotations

from typing import Any, Dict

import moto.cloudformation.parsing as parsing
from moto.cognitoidp.models import cognitoidp_backends
from moto.core.common_models import CloudFormationModel


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


for cache in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
    cache.cache_clear()
