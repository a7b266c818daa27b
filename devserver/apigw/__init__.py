"""A local API Gateway WebSocket API (and REST API) in front of a Chalice app's handlers (dev only).

One module per part of API Gateway:

* ``server``       ``ApiGatewayEmulator``: the WebSocket endpoint, routing, timeouts, lifecycle
* ``connection``   one client connection: its state and its ordered outbound queue
* ``integration``  the Lambda proxy integration calling the app's handlers (REST's too)
* ``management``   the ``@connections`` management API the app posts answers to
* ``rest``         the REST API: the app's ``@app.route``s through one Lambda proxy integration
* ``events``       the events handed to the integration (pure; tests and bench use it too)

``ApiGatewayEmulator`` is imported on first use: ``devserver.apigw.events`` is imported by unit
tests and by the bench's cold-start probe, which should not load aiohttp and the server with it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devserver.apigw.server import ApiGatewayEmulator

__all__ = ["ApiGatewayEmulator"]


def __getattr__(name: str) -> Any:
    """``from devserver.apigw import ApiGatewayEmulator`` imports the server only then."""
    if name == "ApiGatewayEmulator":
        from devserver.apigw.server import ApiGatewayEmulator

        return ApiGatewayEmulator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
