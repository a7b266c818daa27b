"""S3's event notifications, and one execution name per object version (pure)."""
from __future__ import annotations

import json

import pytest

from chalicelib.documents.notifications import MAX_EXECUTION_NAME, ObjectCreated, created_objects, execution_name


def notification(key: str = "uploads/abc/def/My+report%281%29.pdf", event: str = "ObjectCreated:Post", **item: object) -> str:
    return json.dumps({"Records": [{"eventName": event, "s3": {"bucket": {"name": "docs"},
                                                                "object": {"key": key, "size": 42, **item}}}]})


def test_a_created_object_is_read_with_its_key_decoded():
    (created,) = created_objects(notification(sequencer="0A1B", eTag="e1"))
    assert created == ObjectCreated("docs", "uploads/abc/def/My report(1).pdf", 42, None, "0A1B", "e1")


def test_a_test_event_and_other_events_start_nothing():
    assert created_objects(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"})) == []
    assert created_objects(notification(event="ObjectRemoved:Delete")) == []
    with pytest.raises(ValueError):
        created_objects("not json")


def test_one_name_per_object_version_whatever_the_notification():
    (created,) = created_objects(notification(sequencer="0A1B"))
    (again,) = created_objects(notification(sequencer="0A1B"))
    assert execution_name("d" * 32, created) == execution_name("d" * 32, again) == "d" * 32 + "-0A1B"
    (versioned,) = created_objects(notification(versionId="3.L4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY", sequencer="0A1B"))
    name = execution_name("d" * 32, versioned)
    assert name == "d" * 32 + "-3_L4kqtJlcpXroDTDmJ_rmSpXd3dIbrHY" and len(name) <= MAX_EXECUTION_NAME
    (rewritten,) = created_objects(notification(sequencer="0A1C"))
    assert execution_name("d" * 32, rewritten) != name  # a new write of the key is a new version
