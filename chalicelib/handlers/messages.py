"""$default: every client frame, answered at once so API Gateway never times out.

The slow part of a turn happens in the worker; this handler only validates, records and queues.
Every outcome reaches the client as an event: ``accepted``, ``pong``, ``usage`` or one ``error``.
"""
from __future__ import annotations

import base64
import binascii
from typing import Any, Dict, Optional

from chalicelib import protocol
from chalicelib.gateway import ConnectionGone, Gateway
from chalicelib.logs import log_context, logger
from chalicelib.protocol import (
    Ask,
    Cancel,
    ClientMessage,
    DeleteDocument,
    DocumentsQuery,
    Event,
    Ping,
    ProtocolError,
    Resume,
    ReturnControlResults,
    Upload,
    UsageQuery,
    parse_client_message,
)
from chalicelib.documents import actions as documents
from chalicelib.runtime import Runtime
from chalicelib.turns import actions
from chalicelib.turns.outcomes import NOT_SIGNED_IN, UNSERVED, rate_limited


def _body(event: Dict[str, Any]) -> Optional[str]:
    body = event.get("body")
    if body is not None and event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise ProtocolError("Binary frames must hold UTF-8 JSON; send text frames.") from None
    return body


def message(runtime: Runtime, event: Dict[str, Any]) -> None:
    context = event["requestContext"]
    connection_id = context["connectionId"]
    gateway = runtime.gateway(context["apiId"], context["stage"])

    def reply(reply_event: Event) -> None:
        try:
            gateway.post(connection_id, reply_event)
        except ConnectionGone:
            logger.info("client left before the reply")

    with log_context(connection_id=connection_id):
        try:
            parsed = parse_client_message(_body(event))
        except ProtocolError as exc:
            logger.info("invalid request", extra={"reason": exc.message})
            if not _over_frame_limit(runtime, reply, connection_id):
                reply(exc.event())
            return
        if not isinstance(parsed, Ask) and _over_frame_limit(runtime, reply, connection_id):
            return
        if isinstance(parsed, Ping):
            reply(protocol.pong_event())
            return
        try:
            _act(runtime, reply, gateway, connection_id, context, parsed)
        except Exception:  # noqa: BLE001 - the client must hear about it, never silence
            logger.exception("could not serve the request")
            reply(UNSERVED.event())


def _over_frame_limit(runtime: Runtime, reply: actions.Reply, connection_id: str) -> bool:
    """Every frame but an ask (which has its own token bucket) counts against the connection's
    allowance; over it, the frame is answered ``rate_limited`` and not served."""
    settings = runtime.settings
    try:
        retry_after_ms = runtime.connections.count_frame(connection_id, settings.frame_window_s, settings.frame_limit)
    except Exception:  # noqa: BLE001 - a limiter that cannot count lets the frame through
        logger.exception("could not count the frame")
        return False
    if retry_after_ms:
        reason = f"This connection sent more than {settings.frame_limit} messages in {settings.frame_window_s} s."
        reply(rate_limited(reason, retry_after_ms).event())
    return retry_after_ms > 0


def _act(
    runtime: Runtime,
    reply: actions.Reply,
    gateway: Gateway,
    connection_id: str,
    context: Dict[str, Any],
    message: ClientMessage,
) -> None:
    connection = runtime.connections.get(connection_id)
    if connection is None:
        reply(NOT_SIGNED_IN.event())
        return
    with log_context(user_id=connection.user_id):
        if isinstance(message, Ask):
            actions.ask(runtime, reply, connection, message, context["apiId"], context["stage"])
        elif isinstance(message, Resume):
            actions.resume(runtime, reply, connection, message.turn_id, message.from_seq)
        elif isinstance(message, Cancel):
            actions.cancel(runtime, reply, gateway, connection, message.turn_id)
        elif isinstance(message, ReturnControlResults):
            actions.return_control(runtime, reply, connection, message, context["apiId"], context["stage"])
        elif isinstance(message, UsageQuery):
            actions.usage(runtime, reply, connection)
        elif isinstance(message, Upload):
            documents.upload(runtime, reply, connection, message)
        elif isinstance(message, DocumentsQuery):
            documents.documents(runtime, reply, connection)
        elif isinstance(message, DeleteDocument):
            documents.delete(runtime, reply, connection, message)
        else:  # parsed, but not served here: say so rather than leave the client waiting
            text = f"This server does not serve the {type(message).__name__} action."
            reply(protocol.error_event(protocol.ErrorCode.INVALID_REQUEST, text, retryable=False))
