"""Posting events to a WebSocket client through API Gateway's management API."""
from __future__ import annotations

from typing import Any

from chalicelib.protocol import Event, encode


# Where a turn asked over REST (/v1/turns) is delivered: no WebSocket client. Posting there is
# posting to a gone client, so its answer is kept (and read back with GET), never sent, unless a
# WebSocket client resumes the turn.
NO_CONNECTION = "-"


class ConnectionGone(Exception):
    """The client is gone (410): final, the connection will never come back."""


class Gateway:
    def __init__(self, management_client: Any) -> None:
        self._client = management_client

    def post(self, connection_id: str, event: Event) -> None:
        if connection_id == NO_CONNECTION:
            raise ConnectionGone(connection_id)
        try:
            self._client.post_to_connection(ConnectionId=connection_id, Data=encode(event))
        except self._client.exceptions.GoneException as exc:
            raise ConnectionGone(connection_id) from exc

    def close(self, connection_id: str) -> None:
        """Close the connection (its client sees the socket close and can resume elsewhere)."""
        if connection_id == NO_CONNECTION:
            raise ConnectionGone(connection_id)
        try:
            self._client.delete_connection(ConnectionId=connection_id)
        except self._client.exceptions.GoneException as exc:
            raise ConnectionGone(connection_id) from exc
