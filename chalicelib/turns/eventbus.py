"""Turn events on Amazon EventBridge: ``TurnCompleted`` or ``TurnFailed``, one per ended turn.

A consumer of the ``TurnReport`` (``chalicelib/turns/report.py``), so it runs only after the turn's
terminal event was posted: billing and analytics subscribe with a rule on the bus named by
``TURN_EVENT_BUS`` (empty: no events). An event carries ids, backend, outcome, timings and token
usage, built from the report alone, which holds neither the prompt nor the answer: no event ever
carries content, whatever ``LOG_CONTENT`` says (that setting is about logs only).

A put that fails, as a whole or for its entry, is logged and never reaches the turn.
"""
from __future__ import annotations

import json
from typing import Any, Dict

from chalicelib.logs import logger
from chalicelib.turns.report import TurnReport

SOURCE = "agentstream"
COMPLETED = "TurnCompleted"
FAILED = "TurnFailed"


def turn_event_detail(report: TurnReport) -> Dict[str, Any]:
    """The event's ``detail``: ids, outcome, timings and usage; fields not known are left out."""
    detail: Dict[str, Any] = {
        "turnId": report.turn_id,
        "userId": report.user_id,  # an id, not content: what billing counts by
        "sessionId": report.session_id,
        "connectionId": report.connection_id,
        "stage": report.stage,
        "backend": report.backend,
        "outcome": report.outcome,
        "durationMs": report.duration_ms,
        "queueMs": report.queue_ms,
        "firstTokenMs": report.first_token_ms,
        "messages": report.messages,
    }
    if report.failed:
        detail["errorCode"] = report.outcome
    usage = report.usage()
    if usage is not None:
        detail["usage"] = usage
    return {name: value for name, value in detail.items() if value is not None and value != ""}


def turn_event(report: TurnReport, bus: str) -> Dict[str, Any]:
    """One ``PutEvents`` entry for this report, on ``bus`` (a name, e.g. ``default``)."""
    return {
        "EventBusName": bus,
        "Source": SOURCE,
        "DetailType": FAILED if report.failed else COMPLETED,
        "Detail": json.dumps(turn_event_detail(report), separators=(",", ":")),
    }


def publish_turn_event(runtime: Any, report: TurnReport) -> None:
    """Put the report's event on the configured bus (a ``report_turn`` consumer).

    Nothing is put when ``TURN_EVENT_BUS`` is empty. An entry EventBridge refuses is logged here;
    an error of the call itself is left to ``report_turn``, which logs it and carries on.
    """
    bus = runtime.settings.turn_event_bus
    if not bus:
        return
    entry = turn_event(report, bus)
    response = runtime.clients.events.put_events(Entries=[entry])
    if response.get("FailedEntryCount", 0):
        result = (response.get("Entries") or [{}])[0]
        logger.warning("turn event not put", extra={"turn_id": report.turn_id, "bus": bus, "detail_type": entry["DetailType"],
                                                     "error": result.get("ErrorCode"), "reason": result.get("ErrorMessage")})
