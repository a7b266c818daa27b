"""The knowledge base's S3 data source: what a sync sees in the bucket right now.

A sync reads the bucket as it is (list, then get), not a history of changes, so an object deleted
since the last sync simply is not there and leaves the index. Every object under the inclusion
prefix is a document except the Bedrock metadata sidecars, ``<key>.metadata.json`` =
``{"metadataAttributes": {...}}``, which give the document of that key its filterable attributes.
Attribute values are plain JSON (string, number, boolean, list of strings) or Bedrock's typed
form ``{"value": {"type": "STRING", "stringValue": ...}, "includeForEmbedding": ...}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

__all__ = ["SIDECAR_SUFFIX", "DataSourceError", "SourceDocument", "read_documents", "s3_client"]

SIDECAR_SUFFIX = ".metadata.json"
_TYPED_VALUES = {"STRING": "stringValue", "NUMBER": "numberValue", "BOOLEAN": "booleanValue",
                 "STRING_LIST": "stringListValue"}


class DataSourceError(Exception):
    """The data source could not be read at all: the whole sync fails with this reason."""


@dataclass(frozen=True)
class SourceDocument:
    """One document as the sync found it; ``error`` says why it cannot be indexed."""

    key: str
    text: str
    attributes: dict[str, Any] = field(default_factory=dict)
    has_sidecar: bool = False
    error: str = ""


def s3_client(endpoint_url: str, region: str) -> Any:
    """An S3 client for the local (moto) endpoint: dummy credentials, path-style addressing."""
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint_url, region_name=region,
        aws_access_key_id="local", aws_secret_access_key="local",
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 2},
                      connect_timeout=5, read_timeout=30),
    )


def read_documents(s3: Any, bucket: str, prefix: str) -> list[SourceDocument]:
    """Every document under ``prefix`` with its sidecar's attributes, in key order."""
    try:
        keys: set[str] = set()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.update(item["Key"] for item in page.get("Contents", ()))
        documents = (_document(s3, bucket, key, keys) for key in sorted(keys) if not key.endswith(SIDECAR_SUFFIX))
        return [document for document in documents if document is not None]
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        if code == "NoSuchBucket":
            raise DataSourceError(f"The S3 bucket {bucket} of the data source does not exist.") from None
        raise DataSourceError(f"Could not read s3://{bucket}/{prefix}: {code or err}") from None
    except BotoCoreError as err:
        raise DataSourceError(f"Could not reach the data source's S3 endpoint: {err}") from None


def _document(s3: Any, bucket: str, key: str, keys: set[str]) -> SourceDocument | None:
    """The document at ``key``; None if it was deleted since the listing."""
    text = _read(s3, bucket, key)
    sidecar = key + SIDECAR_SUFFIX
    raw = _read(s3, bucket, sidecar) if sidecar in keys else None
    if text is None:
        return None
    if raw is None:
        return SourceDocument(key, text)
    try:
        attributes = _attributes(json.loads(raw))
    except ValueError as err:
        return SourceDocument(key, text, has_sidecar=True, error=f"Invalid metadata file {sidecar}: {err}")
    return SourceDocument(key, text, attributes, has_sidecar=True)


def _read(s3: Any, bucket: str, key: str) -> str | None:
    """The object's text; None if it no longer exists (deleted while the sync runs)."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "NoSuchKey":
            return None
        raise
    return body.read().decode("utf-8", errors="replace")


def _attributes(sidecar: Any) -> dict[str, Any]:
    """``metadataAttributes`` as plain JSON values (the typed form unwrapped)."""
    attributes = sidecar.get("metadataAttributes") if isinstance(sidecar, dict) else None
    if not isinstance(attributes, dict):
        raise ValueError("expected {\"metadataAttributes\": {...}}")
    return {name: _plain(value) for name, value in attributes.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, dict) and isinstance(value.get("value"), dict):
        typed = value["value"]
        member = _TYPED_VALUES.get(str(typed.get("type")))
        if member is None or member not in typed:
            raise ValueError(f"unknown typed attribute value {typed!r}")
        return typed[member]
    return value
