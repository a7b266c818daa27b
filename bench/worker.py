"""``python -m bench.worker``: one warm turn-worker container, running one relay's turns.

Started once per relay by ``python -m bench``; reads one job per line on stdin and answers one
JSON line on its own copy of stdout (the app's log lines go to stderr instead). A job runs one
turn and reports the worker's CPU time for it (``time.process_time()`` of this process, so the
reading thread, agentstream's posting thread, boto3's parsing and signing are all counted) and
its wall time, when each of its posts went out (so the bench can tell how long text waited in the
worker before its post started) and, for agentstream, the DynamoDB, SQS and EventBridge requests
the turn made (what the cost per 1,000 turns is computed from).

- ``agentstream``: the deployed code path, unchanged. Setup (not part of the worker's figures):
  ``websocket_connect`` records the connection and ``websocket_message`` accepts the ask and queues
  the turn (its duration and its requests are counted separately, as the ask's). Timed:
  ``turn_worker`` invoked with the queued SQS record, as Lambda invokes it.
- ``post_once`` / ``post_per_delta``: the baselines (``bench.baselines``) with the same boto3
  clients, taken from the app's own ``AwsClients``.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any, Dict, List, Optional


class PostLog:
    """When each PostToConnection request was handed to the network (a botocore ``before-send``
    observer on the shared management client: it watches, it changes nothing)."""

    def __init__(self, client: Any) -> None:
        self.starts: List[float] = []
        client.meta.events.register("before-send.apigatewaymanagementapi.PostToConnection", self._sent)

    def _sent(self, **_: Any) -> None:
        self.starts.append(time.monotonic())

    def reset(self) -> None:
        self.starts = []


class DynamoLog:
    """Every DynamoDB request of a turn (a ``before-send`` observer on the app's own client), and
    an estimate of the capacity units they consume.

    DynamoDB bills a write by the size of the whole item (the larger of before and after, in 1 KB
    units) and a strongly consistent read by the item's size in 4 KB units (an eventually
    consistent one half that), however little of it the request touches. The turn record's size is
    known at the end of the turn (read back, not timed); the answer it held at each moment is the
    last answer a request wrote into it. Items of the other tables (connections, rate limits, usage)
    are taken as under 1 KB: one unit a write, one (or half) a read.
    """

    def __init__(self, client: Any) -> None:
        self.requests: List[Dict[str, Any]] = []
        client.meta.events.register("before-send.dynamodb", self._sent)

    def _sent(self, request: Any = None, event_name: str = "", **_: Any) -> None:
        body = request.body if request is not None else b""
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            data = {}
        answer = (data.get("ExpressionAttributeValues") or {}).get(":answer") or (data.get("Item") or {}).get("answer")
        self.requests.append({
            "operation": event_name.rsplit(".", 1)[-1],
            "table": data.get("TableName", ""),
            "answer_bytes": None if answer is None else len(answer.get("S", "").encode("utf-8")),
            "bytes": len(body or b""),
            "consistent": bool(data.get("ConsistentRead")),
        })

    def reset(self) -> None:
        self.requests = []

    def take(self) -> List[Dict[str, Any]]:
        """The requests so far, and start again."""
        taken, self.requests = self.requests, []
        return taken

    def estimate(self, client: Any, turns_table: str, turn_id: Optional[str],
                 requests: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
        """Requests by operation (and by table), and the capacity units they cost (an estimate, see
        above); of the requests so far, or of ``requests`` (taken earlier)."""
        requests = list(self.requests if requests is None else requests)
        base = 0
        if turn_id:
            item = client.get_item(TableName=turns_table, Key={"turnId": {"S": turn_id}}, ConsistentRead=True)
            attributes = item.get("Item", {})
            base = sum(_attribute_size(name, value) for name, value in attributes.items() if name != "answer")
        saved, wcu, rcu = 0, 0.0, 0.0
        operations: Dict[str, int] = {}
        by_table: Dict[str, int] = {}
        for request in requests:
            operations[request["operation"]] = operations.get(request["operation"], 0) + 1
            on_turn = request["table"] == turns_table
            table = "TurnsTable" if on_turn else (request["table"] or "?")
            key = f"{table} {request['operation']}"
            by_table[key] = by_table.get(key, 0) + 1
            size_before = (base + saved) if on_turn else 1
            if request["answer_bytes"] is not None and on_turn:
                saved = request["answer_bytes"] + len("answer")
            if request["operation"] in ("PutItem", "UpdateItem", "DeleteItem"):
                wcu += max(1, -(-max(size_before, (base + saved) if on_turn else 1) // 1024))
            elif request["operation"] == "GetItem":
                rcu += max(1, -(-size_before // 4096)) * (1.0 if request.get("consistent", True) else 0.5)
            elif request["operation"] in ("TransactWriteItems",):
                wcu += 2  # a transaction costs two units per item; the bench's turns use none
        return {"requests": len(requests), "operations": operations, "by_table": by_table, "write_units": wcu,
                "read_units": rcu, "request_bytes": sum(r["bytes"] for r in requests), "turn_item_bytes": base + saved}


class RequestLog:
    """Every request of one AWS client, counted by operation (a ``before-send`` observer: it watches,
    it changes nothing). A retried request counts once per attempt, as AWS bills it."""

    def __init__(self, client: Any, service: str) -> None:
        self.operations: Dict[str, int] = {}
        client.meta.events.register(f"before-send.{service}", self._sent)

    def _sent(self, event_name: str = "", **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        self.operations[operation] = self.operations.get(operation, 0) + 1

    def take(self) -> Dict[str, int]:
        """The requests so far, by operation, and start again."""
        taken, self.operations = self.operations, {}
        return taken


def _attribute_size(name: str, value: Dict[str, Any]) -> int:
    """DynamoDB's size of one attribute: its name plus its value (strings in UTF-8, numbers ~digits/2)."""
    size = len(name.encode("utf-8"))
    if "S" in value:
        return size + len(value["S"].encode("utf-8"))
    if "N" in value:
        return size + len(value["N"]) // 2 + 1
    if "BOOL" in value:
        return size + 1
    return size + len(json.dumps(value))


def _turn_id_of(messages: List[Dict[str, Any]]) -> Optional[str]:
    try:
        return json.loads(messages[0]["Body"]).get("turnId")
    except (IndexError, KeyError, ValueError):
        return None


def _run_agentstream(app: Any, runtime: Any, job: Dict[str, Any], queue: Dict[str, str], posts: PostLog,
                     dynamo: DynamoLog, counted: Dict[str, RequestLog]) -> Dict[str, Any]:
    """One turn: ``$connect`` (not counted), ``$default`` (the ask: its time and its DynamoDB and SQS
    requests are counted), then the timed ``turn_worker`` invocation (its requests counted too)."""
    from bench import events

    handlers = app.handler_map
    connection_id = job["connection_id"]
    answer = handlers["websocket_connect"](events.connect(connection_id, events.token(job["user"])),
                                           events.context("websocket_connect"))
    if (answer or {}).get("statusCode", 200) != 200:
        raise RuntimeError(f"$connect refused the bench connection: {answer}")
    dynamo.reset()
    for log in counted.values():
        log.take()
    ask_cpu, ask_wall = time.process_time(), time.monotonic()
    handlers["websocket_message"](events.message(connection_id, {"prompt": job["prompt"]}),
                                  events.context("websocket_message"))
    ask_cpu, ask_wall = time.process_time() - ask_cpu, time.monotonic() - ask_wall
    ask_dynamodb = dynamo.take()
    ask_requests = {name: log.take() for name, log in counted.items()}
    sqs = runtime.clients.sqs
    messages = events.receive_turns(sqs, queue["url"], 1)  # Lambda's poller, in the bench: not counted
    event = events.sqs(messages, queue["arn"], runtime.settings.region)
    context = events.context("turn_worker")
    posts.reset()
    dynamo.reset()
    for log in counted.values():
        log.take()
    cpu, wall = time.process_time(), time.monotonic()
    result = handlers["turn_worker"](event, context)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    failures = (result or {}).get("batchItemFailures") or []
    starts = posts.starts
    requests = {name: log.take() for name, log in counted.items()}
    turn_id = _turn_id_of(messages)
    dynamodb = dynamo.estimate(runtime.clients.dynamodb, runtime.settings.turns_table, turn_id)
    ask = {"cpu_s": ask_cpu, "wall_s": ask_wall, "requests": ask_requests,
           "dynamodb": dynamo.estimate(runtime.clients.dynamodb, runtime.settings.turns_table, turn_id, ask_dynamodb)}
    return {"cpu_s": cpu, "wall_s": wall, "failures": len(failures), "post_starts": starts, "dynamodb": dynamodb,
            "requests": requests, "ask": ask}


def _management(runtime: Any) -> Any:
    """The management client the app itself uses (``AwsClients`` caches one per endpoint)."""
    from chalicelib.aws import management_endpoint

    from bench import events

    return runtime.clients.management(management_endpoint(runtime.settings, events.API_ID, events.STAGE))


def _run_baseline(runtime: Any, job: Dict[str, Any], posts: PostLog) -> Dict[str, Any]:
    from bench import baselines

    settings = runtime.settings
    agent = runtime.clients.bedrock_agent_runtime
    management = _management(runtime)
    request = baselines.Request(
        settings.agent_id, settings.agent_alias_id, f"bench-{job['tag']}", job["prompt"], job["connection_id"],
        job["tag"],
    )
    relay = baselines.RELAYS[job["relay"]]
    posts.reset()
    cpu, wall = time.process_time(), time.monotonic()
    count = relay(agent, management, request)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    return {"cpu_s": cpu, "wall_s": wall, "posts": count, "post_starts": posts.starts}


def main() -> int:
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # the app logs to stdout, as on Lambda: send those lines to stderr
    import app as app_module
    from chalicelib.runtime import get_runtime

    runtime = get_runtime()
    queue: Dict[str, str] = {}
    if runtime.settings.turn_queue_url:
        url = runtime.settings.turn_queue_url
        arn = runtime.clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
        queue = {"url": url, "arn": arn["QueueArn"]}
    posts = PostLog(_management(runtime))
    dynamo = DynamoLog(runtime.clients.dynamodb)
    counted = {"sqs": RequestLog(runtime.clients.sqs, "sqs"), "events": RequestLog(runtime.clients.events, "eventbridge")}
    answers.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        job = json.loads(line)
        try:
            if job["relay"] == "agentstream":
                result = _run_agentstream(app_module.app, runtime, job, queue, posts, dynamo, counted)
            else:
                result = _run_baseline(runtime, job, posts)
        except Exception as exc:  # noqa: BLE001 - report it and keep serving
            traceback.print_exc()
            result = {"error": f"{type(exc).__name__}: {exc}"}
        answers.write(json.dumps({"id": job["id"], **result}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
