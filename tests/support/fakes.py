"""Stand-ins for the two services moto cannot play in-process: the management API and Bedrock.

They behave like boto3 clients where the app can tell (method names, modelled exception classes,
the dicts botocore yields for an event stream), and record what the app sent.
"""
from __future__ import annotations

import json
from functools import cached_property
import threading
from typing import Any, Callable, Dict, Iterable, List, Optional

from botocore.exceptions import ClientError, EventStreamError

from chalicelib.aws import AwsClients
from chalicelib.store.history import exchange
from chalicelib.settings import Settings
from tests.support.timing import wait_until


class _GoneException(ClientError):
    pass


class _Exceptions:
    GoneException = _GoneException


class FakeManagementApi:
    """Records posts per connection; connections listed in ``gone`` answer 410; connections in
    ``refusing`` answer 403 to that many posts (-1: to every post); ``closed`` lists deletions."""

    exceptions = _Exceptions

    def __init__(self) -> None:
        self.posts: List[tuple] = []
        self.gone: set = set()
        self.gone_after: Dict[str, int] = {}  # connection -> posts accepted before it is gone
        self.endpoints: List[str] = []
        self.refusing: Dict[str, int] = {}
        self.closed: List[str] = []
        self._lock = threading.Lock()

    def post_to_connection(self, ConnectionId: str, Data: bytes) -> Dict[str, Any]:
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
            refusals = self.refusing.get(ConnectionId, 0)
            if refusals:
                self.refusing[ConnectionId] = refusals - 1 if refusals > 0 else refusals
                raise ClientError(
                    {"Error": {"Code": "ForbiddenException", "Message": "Forbidden"}, "ResponseMetadata": {"HTTPStatusCode": 403}},
                    "PostToConnection",
                )
            assert isinstance(Data, bytes) and len(Data) <= 128 * 1024
            self.posts.append((ConnectionId, Data))
        return {}

    def delete_connection(self, ConnectionId: str) -> Dict[str, Any]:
        with self._lock:
            if ConnectionId in self.gone:
                raise _GoneException(
                    {"Error": {"Code": "GoneException", "Message": ""}, "ResponseMetadata": {"HTTPStatusCode": 410}},
                    "DeleteConnection",
                )
            self.closed.append(ConnectionId)
            self.gone.add(ConnectionId)
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
    inside the stream; a callable item is called and yields nothing: ``until(...)`` holds the stream
    at that point until the test's condition holds (a chunk was posted, a cancel was seen).
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


class Serialized:
    """A client whose calls run one at a time. DynamoDB applies each conditional write atomically;
    moto's in-process backend does not lock, so tests that race writes need this to be faithful."""

    _lock = threading.Lock()

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name.startswith("_") or not callable(attribute) or name in ("exceptions", "meta"):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            with Serialized._lock:
                return attribute(*args, **kwargs)

        return call


class FakeClients(AwsClients):
    """Real moto-backed DynamoDB and SQS; fakes for the management API and Bedrock."""

    def __init__(self, settings: Settings, management: FakeManagementApi, agent: FakeAgentRuntime) -> None:
        super().__init__(settings)
        self._fake_management = management
        self._fake_agent = agent

    @cached_property
    def dynamodb(self) -> Any:  # type: ignore[override]
        return Serialized(self._client("dynamodb", connect_timeout=2, read_timeout=5))

    @property
    def bedrock_agent_runtime(self) -> Any:  # type: ignore[override]
        return self._fake_agent

    def management(self, endpoint_url: str) -> Any:
        self._fake_management.endpoints.append(endpoint_url)
        return self._fake_management


def until(predicate: Callable[[], object], timeout: float = 10.0) -> Callable[[], None]:
    """A script item: the agent's stream goes on only once ``predicate`` holds."""
    return lambda: wait_until(predicate, timeout)


class MemoryHistory:
    """History's interface over a dict (the DynamoDB one is tested in tests/unit/test_history.py)."""

    def __init__(self) -> None:
        self.items: Dict[str, List[Dict[str, Any]]] = {}

    def load(self, key: str) -> List[Dict[str, Any]]:
        return list(self.items.get(key, []))

    def append(self, key: str, prompt: str, answer: str) -> None:
        self.items[key] = self.load(key) + exchange(prompt, answer)
