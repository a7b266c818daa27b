"""One worker execution, many turns: its SQS batch and what it takes from the queue while it has room.

A turn mostly waits (on Bedrock, on API Gateway), so one execution streams up to
``WORKER_MAX_TURNS`` of them at once, each in a thread of its own with its own relay, watcher and
outcome: a slow turn never holds back another's first token, and one turn's failure is reported
alone (a batch item failure). While a slot is free the execution takes more turns from the queue
itself (short polls, backing off while the queue is empty), so executions stay full under load
instead of draining to their slowest turn; it stops taking when less than
``WORKER_REFILL_RESERVE_S`` of its time is left, and it ends the moment its last turn ends.

A delivery that could not start comes back in seconds: its visibility is shortened (doubling per
receive), so the dead-letter queue still gets a poison message after ``maxReceiveCount`` receives.
"""
from __future__ import annotations

import enum
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Callable, Dict, Iterable, List, Optional

from chalicelib.logs import log_context, logger
from chalicelib.retry import redelivery_delay_s
from chalicelib.runtime import Runtime
from chalicelib.turns.queue import Delivery, TurnMessage
from chalicelib.turns.run import TurnBusy, run_turn

# The pause after a poll that found the queue empty, doubled per empty poll up to the cap: at most
# one ReceiveMessage a second per execution while it has room and the queue has nothing.
REFILL_FIRST_PAUSE_S = 0.1
REFILL_MAX_PAUSE_S = 1.0


class Verdict(enum.Enum):
    DONE = "done"  # the turn was served (or needed nothing): the message goes
    RETRY = "retry"  # it could not start: back in seconds, counted toward the dead-letter queue
    LATER = "later"  # another live worker serves it: look again after the visibility timeout


def serve(runtime: Runtime, delivery: Delivery) -> Verdict:
    """Run one delivery's turn to its end; what should become of its message."""
    with log_context(message_id=delivery.message_id):
        try:
            message = TurnMessage.from_json(delivery.body)
        except ValueError:
            logger.error("unreadable turn message; left for the dead-letter queue")
            return Verdict.RETRY
        try:
            run_turn(runtime, message)
        except TurnBusy:
            logger.info("turn is being served by another worker; will look again")
            return Verdict.LATER
        except Exception:  # noqa: BLE001 - retry this delivery, keep the others running
            logger.exception("turn could not start; will be retried", extra={"receives": delivery.receives})
            return Verdict.RETRY
    return Verdict.DONE


class TurnPool:
    """Serves a batch and its refills concurrently; ``run`` returns the batch records to report."""

    def __init__(self, runtime: Runtime, remaining_ms: Callable[[], float]) -> None:
        settings = runtime.settings
        self._runtime = runtime
        self._remaining_ms = remaining_ms
        self._size = max(1, settings.worker_max_turns)
        self._reserve_ms = settings.worker_refill_reserve_s * 1000
        self._executor = ThreadPoolExecutor(max_workers=self._size, thread_name_prefix="turn")
        self._running: Dict["Future[Verdict]", Delivery] = {}
        self._failed: List[str] = []

    def run(self, batch: Iterable[Delivery]) -> List[str]:
        """Serve the batch, and refills while there is room, until every turn has ended."""
        deliveries = list(batch)
        if len(deliveries) > self._size:
            logger.warning("the batch is larger than WORKER_MAX_TURNS: some turns wait for a slot",
                           extra={"batch": len(deliveries), "slots": self._size})
        for delivery in deliveries:
            self._submit(delivery)
        pause = REFILL_FIRST_PAUSE_S
        try:
            while self._running:
                room = self._size - len(self._running)
                refilling = room > 0 and self._may_refill()
                if refilling and self._refill(room):
                    pause = REFILL_FIRST_PAUSE_S
                    continue
                finished, _ = wait(list(self._running), timeout=pause if refilling else None, return_when=FIRST_COMPLETED)
                if refilling and not finished:
                    pause = min(REFILL_MAX_PAUSE_S, pause * 2)
                for future in finished:
                    self._settle(self._running.pop(future), future.result())
        finally:
            self._executor.shutdown(wait=True)
        return self._failed

    def _submit(self, delivery: Delivery) -> None:
        self._running[self._executor.submit(serve, self._runtime, delivery)] = delivery

    def _may_refill(self) -> bool:
        return bool(self._runtime.settings.turn_queue_url) and self._remaining_ms() > self._reserve_ms

    def _refill(self, room: int) -> bool:
        """Take up to ``room`` queued turns; whether any were taken."""
        try:
            taken = self._runtime.queue.take(room)
        except Exception:  # noqa: BLE001 - refilling is an optimisation: the event source still delivers
            logger.warning("could not take turns from the queue", exc_info=True)
            return False
        for delivery in taken:
            self._submit(delivery)
        return bool(taken)

    def _settle(self, delivery: Delivery, verdict: Verdict) -> None:
        """Delete what this execution took and served; bring failures back soon; report the batch's."""
        queue = self._runtime.queue
        settings = self._runtime.settings
        delay: Optional[int] = None
        if verdict is Verdict.RETRY:
            delay = redelivery_delay_s(delivery.receives, settings.turn_retry_base_s, settings.turn_retry_max_s)
        try:
            if verdict is Verdict.DONE and delivery.taken:
                queue.delete(delivery)
            elif delay is not None:
                queue.retry_in(delivery, delay)
        except Exception:  # noqa: BLE001 - the message then comes back after the visibility timeout
            logger.warning("could not settle the message", extra={"message_id": delivery.message_id}, exc_info=True)
        if verdict is not Verdict.DONE and not delivery.taken:
            self._failed.append(delivery.message_id)
