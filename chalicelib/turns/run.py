"""The worker's side of a turn: claimed, run against the backend, relayed, ended by exactly one terminal event.

A turn is claimed with a conditional write before the agent is called, so a redelivered SQS
message never invokes the agent twice; a turn found claimed but unfinished (its worker died) is
ended with ``interrupted`` instead of being silently re-run, since an agent's actions may have
side effects. While it runs, a watcher saves the answer so far and picks up what the client asked
of the turn meanwhile: a resume on another connection, or a cancel. The outcome is persisted
before the terminal event is posted, so a client that resumes always finds either a running turn
it can attach to or a finished one it can read back.
"""
from __future__ import annotations

import base64
import contextvars
import threading
import time
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Union

from chalicelib import protocol
from chalicelib.backends import End, Files, ReturnControl, TextDelta, Trace, TurnRequest
from chalicelib.gateway import NO_CONNECTION, Gateway
from chalicelib.logs import log_context, logger
from chalicelib.protocol import Event
from chalicelib.retry import retrying
from chalicelib.runtime import Runtime
from chalicelib.store import now_ms
from chalicelib.tracing import subsegment
from chalicelib.turns.lifecycle import interrupt_if_dead, leave_flight, post_quietly
from chalicelib.turns.outbox import Outbox, decode_ends, encode_ends
from chalicelib.turns.outcomes import CANCELLED, CRASHED, INTERRUPTED, NO_END, SUPERSEDED, Failure, Status
from chalicelib.turns.queue import TurnMessage
from chalicelib.turns.record import Turn, parse_resumer
from chalicelib.turns.relay import PostRetries, Relay
from chalicelib.turns.report import TurnReport, report_turn

Outcome = Union[End, Failure, ReturnControl]  # how one invocation of a turn ends
MAX_INLINE_FILE_BYTES = 16 * 1024  # base64 of this still fits a 32 KB frame
# Claims retried here (each after botocore's own attempts) before the message goes back to the
# queue, whose visibility timeout would keep the client waiting for many minutes.
CLAIM_ATTEMPTS = 5


def describe_file(file: Dict[str, Any]) -> Dict[str, Any]:
    """A file the agent produced, as the client gets it: inline if small, else name, type and size."""
    content = file.get("bytes") or b""
    described: Dict[str, Any] = {"name": file.get("name", ""), "type": file.get("type", ""), "size": len(content)}
    if len(content) <= MAX_INLINE_FILE_BYTES:
        described["content"] = base64.b64encode(content).decode("ascii")
    else:
        described["note"] = f"Too large to send over the WebSocket ({len(content):,} bytes); not included."
    return described


def _claim_retried(exc: BaseException, attempt: int) -> None:
    logger.warning("claim failed; retrying", extra={"error": type(exc).__name__, "attempt": attempt + 1})


class TurnBusy(Exception):
    """Another worker is serving this turn right now; the message should come back later."""


def run_turn(runtime: Runtime, message: TurnMessage) -> None:
    """Run one queued turn to its terminal event. Raises only before the agent was called."""
    with log_context(turn_id=message.turn_id):
        turn = retrying(lambda: runtime.turns.claim(message.turn_id), CLAIM_ATTEMPTS, _claim_retried)
        gateway = runtime.gateway(message.api_id, message.stage)
        if turn is None:
            _settle_redelivery(runtime, gateway, message.turn_id)
            return
        with log_context(connection_id=turn.connection_id, user_id=turn.user_id), subsegment("## turn", turn_id=turn.turn_id):
            run = TurnRun(runtime, gateway, turn)
            try:
                run.run()
            except Exception:  # noqa: BLE001 - after the claim, end the turn instead of retrying it
                logger.exception("turn failed")
                run.end_after_crash()
            if not run.paused:
                leave_flight(runtime, turn)
                report = run.report()
                if report is not None:  # after the end was posted: off the client's wait
                    report_turn(runtime, report)


class TurnRun:
    """One claimed turn: read the agent, relay, watch for resume/cancel, persist, end."""

    def __init__(self, runtime: Runtime, gateway: Gateway, turn: Turn) -> None:
        settings = runtime.settings
        self.runtime = runtime
        self.gateway = gateway
        self.turn = turn
        self.outbox = Outbox(turn.turn_id, settings.flush_interval_ms / 1000, settings.max_frame_bytes)
        retries = PostRetries(settings.relay_post_attempts, settings.relay_retry_base_ms / 1000)
        self.relay = Relay(gateway.post, self.outbox, turn.connection_id, close=gateway.close, retries=retries)
        self.answer: List[str] = []
        self.started = time.monotonic()
        self.claimed_at = now_ms()
        self._lock = threading.Lock()
        self._concluded = False
        self._ended = threading.Event()  # set once the conclusion (by either thread) is complete
        self._stop = threading.Event()  # set when the turn ends, by the reader or the watcher
        self._lost = False  # the turn is no longer ours: write and post nothing more
        self.paused = False  # waiting for the client's tool results
        self.resumes = 0  # the turn's resumes acted on so far (its record lists every one)
        self.phase: Optional[str] = None  # what the agent is doing, as its trace last said
        self.outcome: Optional[str] = None  # "done" or the terminal error's code, once concluded
        self.stats: Dict[str, Any] = {}
        self.session_id = turn.session_id

    # ---- the reader (the invocation's own thread)

    def run(self) -> None:
        # The watcher logs with this thread's ids (connection, turn, user).
        watcher = threading.Thread(target=contextvars.copy_context().run, args=(self._watch,), name="watcher", daemon=True)
        with self.relay:
            if self.turn.resumers:  # resumed while it was queued: the last resume gets it
                self._follow(self.turn.resumers, self.turn.origin_connection_id)
            watcher.start()
            with subsegment("## bedrock stream", backend=self.runtime.settings.backend):
                outcome = self._read()
            self.conclude(outcome)
        self._stop.set()
        watcher.join()
        if self.relay.gone and not self._lost and self.relay.connection_id != NO_CONNECTION:
            logger.info("client gone; answer kept, connection record removed")
            self.runtime.connections.delete(self.relay.connection_id)

    def _request(self) -> TurnRequest:
        turn = self.turn
        results = turn.control_results
        if results:  # a paused turn continues with the client's tool results
            return TurnRequest(
                "", turn.session_id, turn.memory_id, turn.trace, results["invocationId"], results["results"],
                turn.user_id,
            )
        return TurnRequest(turn.prompt, turn.session_id, turn.memory_id, turn.trace, user_id=turn.user_id)

    def _read(self) -> Outcome:
        request = self._request()
        turn = self.turn
        if turn.answer or turn.seq_ends:  # continuing: the turn so far first, from seq 1 (like a resume)
            self.answer.append(turn.answer)
            self.relay.restore(turn.answer, decode_ends(turn.seq_ends), turn.extras)
            self.relay.attach(self.relay.connection_id)
        try:
            for event in self.runtime.backend.stream(request):
                if self._stop.is_set():
                    return CANCELLED  # ignored if the watcher already ended the turn
                if isinstance(event, TextDelta):
                    with self._lock:
                        self.answer.append(event.text)
                    self.relay.text(event.text)
                elif isinstance(event, Trace):
                    self.phase = event.phase or self.phase
                    if self.turn.trace:
                        self.relay.event(partial(protocol.trace_event, self.turn.turn_id, trace=event.trace))
                elif isinstance(event, Files):
                    self._files(event)
                else:
                    return event  # End, Failure or ReturnControl: this invocation is over
        except Exception:  # noqa: BLE001 - a bug mid-stream still ends the turn in sequence
            logger.exception("turn failed while streaming")
            return CRASHED
        return NO_END

    # ---- the end: exactly once, by whichever thread gets there first

    def conclude(self, outcome: Outcome) -> None:
        """Persist the outcome, then queue the terminal event; the first caller wins, and the
        other waits until it is done (the reader must not close the relay before the end is in)."""
        with self._lock:
            first = not self._concluded
            self._concluded = True
            self._stop.set()
            text = "".join(self.answer)
        if not first:
            self._ended.wait()
            return
        try:
            self._conclude(outcome, text)
        finally:
            self._ended.set()

    def _conclude(self, outcome: Outcome, text: str) -> None:
        self.relay.flush()  # every chunk out before the stats count them
        if isinstance(outcome, ReturnControl):
            self._pause(outcome, text)
            return
        stats = self._stats(text, outcome)
        failure = outcome if isinstance(outcome, Failure) else None
        status = Status.ERROR if failure else Status.DONE
        turns = self.runtime.turns
        if not self._persist(lambda resumes: turns.finish(self.turn, status, stats, failure, resumes, self._progress(text))):
            return
        session_id = outcome.session_id if isinstance(outcome, End) else self.turn.session_id
        turn_id = self.turn.turn_id
        self.outcome, self.stats, self.session_id = (failure.code if failure else "done"), stats, session_id

        def terminal(seq: int) -> Event:
            if failure is None:
                return protocol.done_event(turn_id, seq, session_id, stats)
            return failure.event(turn_id, seq)

        self.relay.close(terminal)
        extra: Dict[str, Any] = {"outcome": failure.code if failure else "done", **stats}
        if self.runtime.settings.log_content:
            extra["answer"] = text
        logger.info("turn finished", extra=extra)

    def _persist(self, write: Callable[[int], bool]) -> bool:
        """Write the end of this run as of the resumes acted on; follow a last-moment resume."""
        while not write(self.resumes):
            current = self.runtime.turns.state(self.turn.turn_id)
            if current is None or current.status != Status.RUNNING or current.claim_id != self.turn.claim_id:
                self._lose("finished elsewhere")
                return False
            self._follow(current.resumers, self.relay.connection_id)  # resumed at the last moment
        return True

    def _progress(self, text: str) -> Dict[str, Any]:
        """The answer so far and how it was numbered, as persisted for replays and continuations."""
        ends, extras = self.relay.numbering()
        return {"answer": text, "seq_ends": encode_ends(ends), "extras": extras}

    def _follow(self, resumers: List[str], serving: str) -> None:
        """Act on the resumes not yet acted on: the last one's connection gets ``accepted`` and the
        turn again after its fromSeq, then the rest; every other connection that was following
        the turn (``serving`` included) is told it went elsewhere, as its terminal event."""
        new = resumers[self.resumes:]
        if not new:
            return
        self.resumes = len(resumers)
        connection_id, from_seq = parse_resumer(new[-1])
        others = [serving] + [parse_resumer(entry)[0] for entry in new[:-1]]
        displaced = [c for index, c in enumerate(others)
                     if c not in (connection_id, NO_CONNECTION) and c not in others[:index]]
        turn_id = self.turn.turn_id
        logger.info("client resumed", extra={"to": connection_id, "from_seq": from_seq, "displaced": len(displaced)})
        self.relay.follow(
            connection_id,
            from_seq,
            protocol.accepted_event(turn_id, self.turn.request_id),
            [(other, SUPERSEDED.event(turn_id)) for other in displaced],
        )

    def _pause(self, control: ReturnControl, text: str) -> None:
        """The agent wants the client to run a tool: ask, and park the turn until it answers."""
        request = {"invocationId": control.invocation_id, "inputs": control.inputs}
        if not self._persist(lambda resumes: self.runtime.turns.pause(self.turn, request, resumes, self._progress(text))):
            return
        self.paused = True
        turn_id = self.turn.turn_id
        self.relay.close(
            lambda seq: protocol.return_control_event(turn_id, seq, control.invocation_id, control.inputs)
        )
        logger.info("turn waiting for the client's tool results", extra={"invocation_id": control.invocation_id})

    def _files(self, files: Files) -> None:
        """Each file as its own event: inline when small enough for a frame, else described."""
        for file in files.files:
            self.relay.event(partial(protocol.files_event, self.turn.turn_id, files=[describe_file(file)]))

    def _stats(self, text: str, outcome: Outcome) -> Dict[str, Any]:
        """What ``done`` reports, and a replay reports again: computed once, persisted whole."""
        first = self.outbox.first_chunk_at
        stats: Dict[str, Any] = {
            "chunks": self.outbox.chunks,
            "characters": len(text),
            "firstTokenMs": None if first is None else round((first - self.started) * 1000),
            "durationMs": round((time.monotonic() - self.started) * 1000),
            "queueMs": max(0, self.claimed_at - self.turn.created_at),
        }
        if isinstance(outcome, End):
            if outcome.stop_reason not in (None, "end_turn"):
                stats["stopReason"] = outcome.stop_reason  # e.g. max_tokens: the answer was cut short
            if outcome.usage:
                stats["usage"] = outcome.usage
            if outcome.latency_ms is not None:
                stats["modelLatencyMs"] = outcome.latency_ms
        return stats

    def report(self) -> Optional[TurnReport]:
        """What operators learn of this run, if it ended the turn (not lost, not paused)."""
        if self.outcome is None or self._lost or self.paused:
            return None
        stats, turn = self.stats, self.turn
        usage = stats.get("usage") or {}
        return TurnReport(
            turn.turn_id, turn.user_id, turn.connection_id, self.session_id, self.runtime.settings.backend,
            self.runtime.settings.stage, self.outcome,
            duration_ms=stats.get("durationMs", round((time.monotonic() - self.started) * 1000)),
            queue_ms=stats.get("queueMs", max(0, self.claimed_at - turn.created_at)),
            first_token_ms=stats.get("firstTokenMs"), messages=self.relay.posts,
            input_tokens=usage.get("inputTokens"), output_tokens=usage.get("outputTokens"),
        )

    def _lose(self, why: str) -> None:
        """Someone else owns the turn now (it was interrupted after we stalled): go quiet."""
        logger.warning("turn lost", extra={"reason": why})
        self._lost = True
        self._stop.set()
        self.relay.abandon()

    # ---- the watcher (a thread): checkpoints, resume and cancel

    def _watch(self) -> None:
        """Look at the turn every control interval (a read); write the heartbeat and the answer so
        far only every checkpoint interval, since DynamoDB bills a write by the whole item."""
        settings = self.runtime.settings
        control_s = settings.control_interval_ms / 1000
        checkpoint_s = settings.checkpoint_interval_ms / 1000
        turns = self.runtime.turns
        saved = (0, 0)  # what the last checkpoint saved: (answer characters, events numbered)
        last_write = time.monotonic()
        while not self._stop.wait(control_s):
            self._progress_if_quiet()
            resumes = self.resumes
            try:
                if time.monotonic() - last_write >= checkpoint_s:
                    last_write = time.monotonic()
                    with self._lock:
                        mark = (sum(len(part) for part in self.answer), self.outbox.seq)
                        text = "".join(self.answer) if mark != saved else ""
                    # Unchanged: only the heartbeat is written (DynamoDB bills a write by the item).
                    current = turns.checkpoint(self.turn, resumes, self._progress(text) if mark != saved else None)
                    saved = mark
                else:
                    current = turns.state(self.turn.turn_id)
            except Exception:  # noqa: BLE001 - a failed look is retried next time
                logger.exception("checkpoint failed")
                continue
            if current is None or self._stop.is_set() or current.still(self.turn.claim_id, resumes):
                continue
            if current.status != Status.RUNNING or current.claim_id != self.turn.claim_id:
                self._lose("taken over")
            elif current.cancel_requested:
                logger.info("turn cancelled by the client")
                self.conclude(CANCELLED)
            else:
                self._follow(current.resumers, self.relay.connection_id)

    def _progress_if_quiet(self) -> None:
        """Nothing was sent for a while: say the turn is alive (and, if known, what the agent does)."""
        interval = self.runtime.settings.progress_interval_s
        if interval > 0 and not self._stop.is_set() and self.relay.quiet_for() >= interval:
            elapsed_ms = round((time.monotonic() - self.started) * 1000)
            self.relay.aside(protocol.progress_event(self.turn.turn_id, elapsed_ms, self.phase))

    def end_after_crash(self) -> None:
        """A bug or an outage outside the stream: end the turn unless its client already has its end."""
        if self.outbox.terminal_queued or self._lost:
            return
        self.outcome = CRASHED.code
        try:
            self.runtime.turns.finish(self.turn, Status.ERROR, {}, CRASHED, progress={"answer": "".join(self.answer)})
        except Exception:  # noqa: BLE001 - the record stays running; a redelivery will interrupt it
            logger.exception("could not record the failure")
        post_quietly(self.gateway, self.relay.connection_id, CRASHED.event(self.turn.turn_id, self.outbox.seq + 1))


def _settle_redelivery(runtime: Runtime, gateway: Gateway, turn_id: str) -> None:
    """A delivery of a turn that is not queued: finished or still-served turns are left alone.

    A running turn whose heartbeat went stale lost its worker (killed, timed out): it is ended
    with ``interrupted``, not run again, since the agent may already have acted on it.
    """
    turn = interrupt_if_dead(runtime, turn_id)
    if turn is None:
        current = runtime.turns.state(turn_id)
        if current is not None and current.status == Status.RUNNING:
            # Its worker is alive (a duplicate delivery): look again later, in case it dies.
            raise TurnBusy(turn_id)
        logger.info("duplicate delivery ignored")
        return
    # The last seq its client was sent, as far as the last checkpoint knows: it may resume from there.
    last_seq = len(decode_ends(turn.seq_ends)) or None
    post_quietly(gateway, turn.connection_id, INTERRUPTED.event(turn_id, lastSeq=last_seq))
    # It waited until its claim and ran, as far as its last heartbeat knew, until that heartbeat.
    claimed = turn.claimed_at or turn.created_at
    settings = runtime.settings
    report_turn(runtime, TurnReport(turn_id, turn.user_id, turn.connection_id, turn.session_id, settings.backend,
                                    settings.stage, INTERRUPTED.code, queue_ms=max(0, claimed - turn.created_at),
                                    duration_ms=max(0, (turn.checkpoint_at or claimed) - claimed)))
