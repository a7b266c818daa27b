"""$connect and $disconnect: who is on the other end of a WebSocket."""
from __future__ import annotations

from typing import Any, Dict

from chalicelib.auth import AuthError, token_from_request
from chalicelib.logs import log_context, logger
from chalicelib.runtime import Runtime

ApiGatewayEvent = Dict[str, Any]


def connect(runtime: Runtime, event: ApiGatewayEvent) -> Dict[str, Any]:
    """Verify the token and remember the connection; a 401 refuses the handshake and writes nothing."""
    connection_id = event["requestContext"]["connectionId"]
    with log_context(connection_id=connection_id):
        token = token_from_request(event.get("queryStringParameters"), event.get("headers"))
        if token is None:
            logger.info("connect refused", extra={"reason": "no token"})
            return {"statusCode": 401}
        try:
            identity = runtime.verifier.verify(token)
        except AuthError as exc:
            logger.info("connect refused", extra={"reason": str(exc)})
            return {"statusCode": 401}
        runtime.connections.put(connection_id, identity.user_id)
        logger.info("connected", extra={"user_id": identity.user_id})
        return {"statusCode": 200}


def disconnect(runtime: Runtime, event: ApiGatewayEvent) -> None:
    """Forget the connection; best effort, since the record's TTL covers a failure here."""
    connection_id = event["requestContext"]["connectionId"]
    with log_context(connection_id=connection_id):
        try:
            runtime.connections.delete(connection_id)
        except Exception:  # noqa: BLE001 - never fail a disconnect; TTL cleans up
            logger.exception("could not delete connection record")
        else:
            logger.info("disconnected")
