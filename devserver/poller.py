"""The SQS-to-Lambda event source mapping, locally (and, with ``sns_events``, an SNS topic's Lambda subscription).

Like Lambda's poller it long-polls the queue, hands batches to the handler as SQS events, caps
how many batches run at once (the mapping's maximum concurrency), deletes what succeeded and
leaves each ``batchItemFailures`` record (or the whole batch, if the handler raised) to come
back after the visibility timeout, and so to the dead-letter queue after ``maxReceiveCount``.

A function subscribed to an SNS topic is played the same way: the topic delivers to a queue, and
the poller hands each message to the function as the SNS event Lambda would (``sns_events``, batch
size 1); a raise leaves the notification to come back, as Lambda retries an asynchronous invocation.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Set

from devserver.lambda_context import LambdaContext
from devserver.sns_events import envelope, sns_event
from devserver.sqs_events import sqs_event

log = logging.getLogger("devserver.poller")

Handler = Callable[[Dict[str, Any], Any], Any]
#: (received messages, the queue's ARN, region) -> the event of one invocation.
EventBuilder = Callable[[List[Dict[str, Any]], str, str], Dict[str, Any]]


def sns_events(subscription_arn: str) -> EventBuilder:
    """For a queue subscribed to an SNS topic (not raw delivery): each message as Lambda's SNS event."""

    def build(messages: List[Dict[str, Any]], queue_arn: str, region: str) -> Dict[str, Any]:
        if len(messages) != 1:
            raise ValueError("SNS invokes a function once per notification: use batch_size=1")
        return sns_event(envelope(messages[0]["Body"]), subscription_arn)

    return build


class SqsPoller:
    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        handler: Handler,
        *,
        function_name: str = "turn_worker",
        batch_size: int = 1,
        max_concurrency: int = 8,
        timeout_s: float = 900.0,
        region: str = "us-east-1",
        event: EventBuilder = sqs_event,
        batch_failures: bool = True,
    ) -> None:
        """``event`` builds each invocation's event (SQS's by default); ``batch_failures``: the
        handler's ``batchItemFailures`` are honoured (SQS's partial batch responses)."""
        self._sqs = sqs
        self._url = queue_url
        self._handler = handler
        self._function_name = function_name
        self.batch_size = batch_size
        self._timeout = timeout_s
        self._region = region
        self._event = event
        self._batch_failures = batch_failures
        self._slots = threading.Semaphore(max_concurrency)
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix=function_name)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"sqs-poller-{function_name}", daemon=True)
        self._queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        self.invocations = 0
        self.largest_batch = 0
        self.redelivered = 0  # records handed out again (ApproximateReceiveCount > 1)
        self.killed = 0
        self._kill_after: Optional[float] = None
        self._kill_turn = ""  # with _kill_after: only a batch that holds this text (a turn id)
        self._doomed: Set[Any] = set()  # worker processes running under the kill fault
        self._doomed_lock = threading.Lock()

    def kill_next_invocation(self, after_s: float, turn_id: str = "") -> None:
        """Fault: run the next batch (the next holding ``turn_id``, if given) in its own process and
        SIGKILL it after ``after_s`` seconds.

        That is how a worker dies on AWS (timeout, out of memory, a crashed runtime): no code of
        its own runs afterwards, and its messages come back after the visibility timeout. Naming
        the turn keeps a redelivery of another test's message from taking the fault instead.
        """
        self._kill_turn = turn_id
        self._kill_after = after_s

    def kill_now(self) -> int:
        """Fault: SIGKILL now the invocations running under ``kill_next_invocation``; returns how many.

        A test arms the fault with a long delay and strikes at a point of the turn it has seen
        (its first chunk arrived), so the worker dies mid-turn however busy the machine is.
        """
        with self._doomed_lock:
            doomed = list(self._doomed)
        for child in doomed:
            child.kill()  # a no-op for one that has just ended
        return len(doomed)

    def stats(self) -> Dict[str, int]:
        return {"invocations": self.invocations, "largest_batch": self.largest_batch,
                "redelivered": self.redelivered, "killed": self.killed}

    def start(self) -> "SqsPoller":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._slots.acquire()
            try:
                messages = self._sqs.receive_message(
                    QueueUrl=self._url,
                    MaxNumberOfMessages=min(10, self.batch_size),
                    WaitTimeSeconds=1,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
            except Exception:  # noqa: BLE001 - keep polling through a hiccup, as Lambda does
                if not self._stop.is_set():
                    log.exception("receive failed")
                messages = []
            if not messages:
                self._slots.release()
                continue
            self._pool.submit(self._invoke, messages)

    def _invoke(self, messages: List[Dict[str, Any]]) -> None:
        try:
            try:
                event = self._event(messages, self._queue_arn, self._region)
            except (ValueError, KeyError):
                log.exception("%s: a message is not what this event source delivers; left on the queue", self._function_name)
                return
            context = LambdaContext.for_invocation(self._function_name, self._timeout, region=self._region)
            self.invocations += 1
            self.largest_batch = max(self.largest_batch, len(messages))
            self.redelivered += sum(1 for m in messages if int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")) > 1)
            with self._doomed_lock:  # one invocation takes the armed fault
                kill_after = self._kill_after
                if kill_after is not None and any(self._kill_turn in m.get("Body", "") for m in messages):
                    self._kill_after = None
                else:
                    kill_after = None
            if kill_after is not None:
                self._run_and_kill(event, kill_after)
                return  # nothing deleted: the messages reappear after the visibility timeout
            try:
                result = self._handler(event, context)
                reported = (result or {}).get("batchItemFailures", []) if self._batch_failures else []
                failed = {item.get("itemIdentifier") for item in reported}
            except Exception:  # noqa: BLE001 - a crashed invocation fails its whole batch
                log.exception("%s raised; the batch will be retried", self._function_name)
                failed = {m["MessageId"] for m in messages}
            done = [m for m in messages if m["MessageId"] not in failed]
            if done:
                self._sqs.delete_message_batch(
                    QueueUrl=self._url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
                )
        finally:
            self._slots.release()

    def _run_and_kill(self, event: Dict[str, Any], after_s: float) -> None:
        child = multiprocessing.get_context("spawn").Process(
            target=_invoke_in_child, args=(self._function_name, json.dumps(event), self._timeout), daemon=True
        )
        child.start()
        with self._doomed_lock:
            self._doomed.add(child)
        try:
            child.join(after_s)
            if child.is_alive():
                child.kill()
            child.join()
        finally:
            with self._doomed_lock:
                self._doomed.discard(child)
        if child.exitcode == -signal.SIGKILL:
            self.killed += 1
            log.warning("%s killed (injected fault)", self._function_name)


def _invoke_in_child(function_name: str, event_json: str, timeout_s: float) -> None:
    """A worker in its own process, as Lambda runs it: import the app, call the handler."""
    import app

    app.app.handler_map[function_name](json.loads(event_json), LambdaContext.for_invocation(function_name, timeout_s))
