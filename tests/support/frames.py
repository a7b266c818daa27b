"""Every frame a client receives, checked against the protocol's schema both ways."""
from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, Dict

import jsonschema

from chalicelib import protocol


@lru_cache(maxsize=None)
def frame_validator() -> jsonschema.Draft7Validator:
    """Validates anything a client can receive (ServerFrame), with the reference validator."""
    schema = protocol.schema_for("ServerFrame")
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def assert_valid_frame(frame: Dict[str, Any]) -> None:
    errors = sorted(frame_validator().iter_errors(frame), key=lambda e: list(e.path))
    assert not errors, f"{frame} breaks the schema: {[e.message for e in errors]}"


def assert_documented(frame: Dict[str, Any]) -> None:
    """A server event carries only the fields its schema definition names (clients may rely on them)."""
    if "type" not in frame:
        return
    definitions = protocol.schema()["definitions"]
    (definition,) = [
        d for d in definitions.values() if d.get("properties", {}).get("type", {}).get("const") == frame["type"]
    ]
    undocumented = set(frame) - set(definition["properties"])
    assert not undocumented, f"{frame['type']} has fields the schema does not document: {undocumented}"
    stats = frame.get("stats")
    if isinstance(stats, dict):
        assert not set(stats) - set(definitions["Stats"]["properties"]), stats


def check_frame(raw: Any) -> Dict[str, Any]:
    """Parse one received frame and check it against the schema both ways (reference + server's)."""
    frame = json.loads(raw)
    assert_valid_frame(frame)
    protocol.validator("ServerFrame")(frame)
    assert_documented(frame)
    return frame
