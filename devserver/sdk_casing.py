"""The casing Step Functions' aws-sdk integrations use, which moto's interpreter lacks.

On AWS an ``arn:aws:states:::aws-sdk:<service>:<action>`` Task takes its Parameters in PascalCase
(``KnowledgeBaseId``) whatever the service's own casing, and hands back the SDK's response in
PascalCase too (``IngestionJob.IngestionJobId``), timestamps as ISO 8601 strings. moto 5.2.5's
interpreter passes the Parameters to boto3 as they are and hands back boto3's own casing
(``StateTaskService._normalise_parameters`` / ``_normalise_response`` do nothing), so for a
camelCase service such as bedrock-agent the request misses its members (``States.Runtime``,
``KeyError('KnowledgeBaseId')``) and the ASL's ``$.IngestionJob.Status`` would find nothing.

``install()`` closes that gap with public botocore events on the session the interpreter makes its
clients from (boto3's default session, in the moto server process): ``before-parameter-build``
renames each Parameter to the model's member of the same name ignoring case, ``after-call``
capitalises each member of a successful response. Only the services named are touched; the
interpreter's optimised integrations (``lambda:invoke``, ``sns:publish``, ``dynamodb:updateItem``)
keep boto3's casing, as they should. The same ASL then runs locally and on AWS.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable, Optional

#: The services (botocore's hyphenated service ids) whose aws-sdk tasks the document pipeline uses.
SERVICES = ("bedrock-agent",)


def to_model_case(value: Any, shape: Any) -> Any:
    """``value`` with each structure key renamed to the model member it names ignoring case (unknown keys kept)."""
    kind = getattr(shape, "type_name", None)
    if kind == "structure" and isinstance(value, dict):
        members = shape.members
        by_lower = {name.lower(): name for name in members}
        renamed = {}
        for key, item in value.items():
            name = by_lower.get(key.lower(), key)
            renamed[name] = to_model_case(item, members.get(name))
        return renamed
    if kind == "list" and isinstance(value, list):
        return [to_model_case(item, shape.member) for item in value]
    if kind == "map" and isinstance(value, dict):
        return {key: to_model_case(item, shape.value) for key, item in value.items()}
    return value


def to_states_case(value: Any, shape: Any) -> Any:
    """``value`` as Step Functions hands an aws-sdk result to the ASL: members capitalised, timestamps ISO 8601."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    kind = getattr(shape, "type_name", None)
    if kind == "structure" and isinstance(value, dict):
        members = shape.members
        return {key[:1].upper() + key[1:]: to_states_case(item, members.get(key)) for key, item in value.items()}
    if kind == "list" and isinstance(value, list):
        return [to_states_case(item, shape.member) for item in value]
    if kind == "map" and isinstance(value, dict):
        return {key: to_states_case(item, shape.value) for key, item in value.items()}
    return value


def _before_parameter_build(params: dict, model: Any, **_: Any) -> None:
    if model.input_shape is not None:
        renamed = to_model_case(params, model.input_shape)
        params.clear()  # botocore goes on with this very dict
        params.update(renamed)


def _after_call(http_response: Any, parsed: dict, model: Any, **_: Any) -> None:
    if model.output_shape is None or getattr(http_response, "status_code", 200) >= 300:
        return  # an error: moto's interpreter reads botocore's own Error / ResponseMetadata
    metadata = parsed.pop("ResponseMetadata", None)
    recased = to_states_case(parsed, model.output_shape)
    parsed.clear()
    parsed.update(recased)
    if metadata is not None:
        parsed["ResponseMetadata"] = metadata


def install(services: Iterable[str] = SERVICES, session: Optional[Any] = None) -> None:
    """Register the casing on the boto3 ``session`` (default: boto3's default session, created if need be).

    Call it once in the process that runs the interpreter, before an execution starts.
    """
    if session is None:
        import boto3

        if boto3.DEFAULT_SESSION is None:
            boto3.setup_default_session()
        session = boto3.DEFAULT_SESSION
    events = session.events
    for service in services:
        events.register(f"before-parameter-build.{service}", _before_parameter_build, unique_id=f"sfn-casing-in-{service}")
        events.register(f"after-call.{service}", _after_call, unique_id=f"sfn-casing-out-{service}")
