"""Stand-ins for the two services moto cannot play in-process: the management API and Bedrock.

They behave like boto3 clients where the app can tell (method names, modelled exception classes,
the dicts botocore yields for an event stream), and record what the app sent.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional

from botocore.exceptions import ClientError, EventStreamError

from chalicelib.aws import AwsClients
from chalicelib.history import exchange
from chalicelib.settings import Settings


class _GoneException(ClientError):
    pass


class _Exceptions:
    GoneException = _GoneException


class FakeManagementApi:
    """Records posts per connection; connections listed in ``gone`` answer 410."""

    exceptions = _Exceptions

    def __init__(self) -> None:
        self.posts: List[tuple] = []
        self.gone: set = set()
        self.gone_after: Dict[str, int] = {}  # connection -> posts accepted before it is gone
        self.latency = 0.0
        self.endpoints: List[str] = []
        self._lock = threading.Lock()

    def post_to_connection(self, ConnectionId: str, Data: bytes) -> Dict[str, Any]:
        if self.latency:
            time.sleep(self.latency)
        with self._lock:
            remaining = self.gone_after.get(ConnectionId)
            if remaining is not None:
                if remaining <= 0:
                    self.gone.add(ConnectionId)
                self.gone_after[ConnectionId] = remaining - 1
            if ConnectionId in self.gone:
                raise _GoneException(
                    {"Error": {"Code": "GoneException", "Message": ""}, "ResponseMetadata": {"HTTPStatusCode": 410}},
                    "PostToConnection",
                )
            assert isinstance(Data, bytes) and len(Data) <= 128 * 1024
            self.posts.append((ConnectionId, Data))
        return {}

    def events(self, connection_id: Optional[str] = None) -> List[Dict[str, Any]]:
        return [json.loads(data) for conn, data in self.posts if connection_id in (None, conn)]


def agent_stream(*texts: str, traces: Iterable[Dict[str, Any]] = ()) -> List[Dict[str, Any]]:
    """The dicts botocore yields for an InvokeAgent ``completion`` stream."""
    events: List[Dict[str, Any]] = [{"trace": {"agentId": "A", "sessionId": "s", "trace": t}} for t in traces]
    events += [{"chunk": {"bytes": text.encode("utf-8")}} for text in texts]
    return events


def stream_error(code: str, message: str = "boom") -> EventStreamError:
    return EventStreamError({"Error": {"Code": code, "Message": message}}, "InvokeAgent")


def client_error(code: str, message: str = "boom", status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, "InvokeAgent"
    )


class FakeAgentRuntime:
    """``invoke_agent`` answering from a script: a list of stream dicts, or an exception to raise.

    A stream item that is an exception is raised while iterating, as botocore does for errors
    inside the stream; a callable item is called (e.g. to sleep) and yields nothing.
    """

    def __init__(self) -> None:
        self.calls: List[Dict[str, Any]] = []
        self.script: Any = agent_stream("Hello", ", ", "world")

    def invoke_agent(self, **params: Any) -> Dict[str, Any]:
        self.calls.append(params)
        if isinstance(self.script, Exception):
            raise self.script

        def completion() -> Iterable[Dict[str, Any]]:
            for item in self.script:
                if isinstance(item, Exception):
                    raise item
                if callable(item):
                    item()
                    continue
                yield item

        return {"completion": completion(), "sessionId": params["sessionId"], "contentType": "application/json"}


class FakeClients(AwsClients):
    """Real moto-backed DynamoDB and SQS; fakes for the management API and Bedrock."""

    def __init__(self, settings: Settings, management: FakeManagementApi, agent: FakeAgentRuntime) -> None:
        super().__init__(settings)
        self._fake_management = management
        self._fake_agent = agent

    @property
    def bedrock_agent_runtime(self) -> Any:  # type: ignore[override]
        return self._fake_agent

    def management(self, endpoint_url: str) -> Any:
        self._fake_management.endpoints.append(endpoint_url)
        return self._fake_management


def sleeper(seconds: float) -> Callable[[], None]:
    return lambda: time.sleep(seconds)


class MemoryHistory:
    """History's interface over a dict (the DynamoDB one is tested in tests/unit/test_history.py)."""

    def __init__(self):
        self.items = {}

    def load(self, key):
        return list(self.items.get(key, []))

    def append(self, key, prompt, answer):
        self.items[key] = self.load(key) + exchange(prompt, answer)
