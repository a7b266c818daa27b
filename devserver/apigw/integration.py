"""The Lambda proxy integration: calling a Chalice app's handlers as Lambda would.

Handlers are blocking, so each call runs in a thread pool (many connections, and
several messages of one connection, run at once, as AWS invokes them concurrently).
API Gateway waits for at most the integration timeout; the handler itself runs on
after that, as a Lambda function does, and its late end is logged. The REST API's
routes all go to one function, the app object itself (Chalice's ``api_handler``).
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from devserver.apigw.events import status_of
from devserver.lambda_context import LambdaContext

log = logging.getLogger("devserver.apigw")

#: The deployed function names Chalice gives the three websocket handlers.
FUNCTION_NAMES = {"$connect": "websocket_connect", "$default": "websocket_message",
                  "$disconnect": "websocket_disconnect"}
#: Chalice's default Lambda timeout: how long a handler may run after its integration timed out.
LAMBDA_TIMEOUT = 60.0

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class Invocation:
    """How one handler call went, as API Gateway sees it."""

    request_id: str
    response: Any = None
    error: BaseException | None = None
    timed_out: bool = False
    elapsed_ms: float = 0.0

    @property
    def status(self) -> int:
        """The integration's HTTP status: 504 on timeout, 500 if it raised."""
        if self.timed_out:
            return 504
        if self.error is not None:
            return 500
        return status_of(self.response)


class LambdaIntegration:
    """Calls the handler Chalice registered for a route key, bounded by the timeout."""

    def __init__(self, app: Any, *, stage: str, integration_timeout: float,
                 max_workers: int = 64) -> None:
        self.app = app
        self.stage = stage
        self.integration_timeout = integration_timeout
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="apigw-lambda")
        self._api_lock = threading.Lock()

    def handler(self, route_key: str) -> Handler | None:
        """The wrapped handler for ``$connect``, ``$default`` or ``$disconnect``, if any.

        ``app.handler_map`` is keyed by the handler's Python name (or its ``name=``),
        not by the deployed function name, so look it up through ``websocket_handlers``.
        """
        config = getattr(self.app, "websocket_handlers", {}).get(route_key)
        if config is None:
            return None
        handler: Handler = self.app.handler_map[config.name]
        return handler

    async def invoke(self, route_key: str, event: dict[str, Any],
                     request_id: str) -> Invocation | None:
        """Call the route's handler; None when the app has no handler for it."""
        handler = self.handler(route_key)
        if handler is None:
            return None
        function = f"{self._app_name}-{self.stage}-{FUNCTION_NAMES[route_key]}"
        return await self._call(route_key, handler, function, event, request_id)

    async def invoke_api(self, event: dict[str, Any], request_id: str) -> Invocation:
        """Call the REST API's function, ``<app_name>-<stage>``: the Chalice app object itself."""
        return await self._call("REST", self._api_handler, f"{self._app_name}-{self.stage}",
                                event, request_id)

    async def invoke_authorizer(self, authorizer: Handler, name: str, event: dict[str, Any],
                                request_id: str) -> Invocation:
        """Call a REST route's authorizer, its own function ``<app_name>-<stage>-<name>``."""
        return await self._call(f"authorizer {name}", authorizer, f"{self._app_name}-{self.stage}-{name}",
                                event, request_id)

    def _api_handler(self, event: dict[str, Any], context: Any) -> Any:
        """One REST call at a time, as in one Lambda execution environment: Chalice keeps the
        request on the app object (``app.current_request``), which concurrent threads would share.
        A call waiting here spends its integration timeout, as a cold start would."""
        with self._api_lock:
            return self.app(event, context)

    @property
    def _app_name(self) -> str:
        return str(getattr(self.app, "app_name", "app"))

    async def _call(self, label: str, handler: Handler, function: str, event: dict[str, Any],
                    request_id: str) -> Invocation:
        """Run one invocation in the pool; API Gateway stops waiting at the integration timeout."""
        context = LambdaContext.for_invocation(
            function, LAMBDA_TIMEOUT, region=os.environ.get("AWS_REGION", "us-east-1"))
        started = time.perf_counter()
        future = asyncio.get_running_loop().run_in_executor(self._pool, handler, event, context)
        outcome = Invocation(request_id)
        try:
            outcome.response = await asyncio.wait_for(asyncio.shield(future),
                                                      self.integration_timeout)
        except TimeoutError:
            outcome.timed_out = True
            future.add_done_callback(lambda f: _log_late(label, request_id, started, f))
        except Exception as exc:  # noqa: BLE001 - whatever the function raised, API Gateway answers an error
            outcome.error = exc
            log.error("%s handler raised (requestId %s)", label, request_id, exc_info=exc)
        outcome.elapsed_ms = (time.perf_counter() - started) * 1000
        return outcome

    def shutdown(self) -> None:
        """Stop taking calls; handlers already running finish on their own."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def _log_late(route_key: str, request_id: str, started: float, future: Any) -> None:
    elapsed = (time.perf_counter() - started) * 1000
    error = None if future.cancelled() else future.exception()
    log.info("%s %s finished after the integration timeout (%.1f ms)%s", route_key,
             request_id, elapsed, f", raised {error!r}" if error else "")
