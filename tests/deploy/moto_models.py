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

Importing this module registers the models (moto collects ``CloudFormationModel`` subclasses once
and caches them, so the cache is cleared here).
"""
from __future__ import annotations

from typing import Any, Dict

import moto.cloudformation.parsing as parsing
from moto.cloudfront.models import cloudfront_backends
from moto.cognitoidp.models import cognitoidp_backends
from moto.core.utils import unix_time
from moto.moto_api._internal import mock_random
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


for cache in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
    cache.cache_clear()
