"""What the REST API shows of a turn (chalicelib/turns/view.py) and how it answers errors (chalicelib/http.py): pure."""
from __future__ import annotations

import json

import pytest

from chalicelib.http import error_response, status_of
from chalicelib.protocol import ErrorCode
from chalicelib.turns.outcomes import CANCELLED, NOT_YOURS, Status, rate_limited
from chalicelib.turns.record import Turn, failure_fields
from chalicelib.turns.view import turn_view


def _turn(**fields) -> Turn:
    return Turn(turn_id="t1", user_id="alice", connection_id="-", prompt="hi", session_id="s", created_at=5, **fields)


def test_a_running_turn_shows_its_answer_so_far_and_when_to_look_again():
    view = turn_view(_turn(status=Status.RUNNING, answer="Hel", seq_ends="3,-"), poll_after_ms=2000)
    assert view == {"turnId": "t1", "status": "running", "answer": "Hel", "seq": 2, "createdAt": 5, "pollAfterMs": 2000}


def test_an_ended_turn_shows_its_stats_or_its_error_and_no_poll_hint():
    done = turn_view(_turn(status=Status.DONE, answer="Hello", stats={"chunks": 1}, finished_at=9, request_id="r"), 2000)
    assert done["stats"] == {"chunks": 1} and done["finishedAt"] == 9 and done["requestId"] == "r"
    assert "pollAfterMs" not in done and "error" not in done
    failed = turn_view(_turn(status=Status.ERROR, conversation_id="trip", **failure_fields(CANCELLED)), 2000)
    assert failed["error"] == {"code": "cancelled", "message": "The turn was cancelled.", "retryable": False}
    assert failed["conversationId"] == "trip" and "stats" not in failed


def test_a_waiting_turn_shows_what_the_agent_asked_for():
    control = {"invocationId": "i1", "inputs": [{"function": "lookup"}]}
    view = turn_view(_turn(status=Status.WAITING, control=control), 2000)
    assert view["control"] == control and view["pollAfterMs"] == 2000


@pytest.mark.parametrize("code, status", [
    (ErrorCode.INVALID_REQUEST, 400), (ErrorCode.UNAUTHORIZED, 401), (ErrorCode.NOT_FOUND, 404),
    (ErrorCode.RATE_LIMITED, 429), (ErrorCode.QUOTA_EXCEEDED, 429), (ErrorCode.INTERNAL, 500),
])
def test_each_code_has_its_http_status(code, status):
    assert status_of(code) == status


def test_the_envelope_says_when_to_retry_in_whole_seconds():
    response = error_response(rate_limited("Too fast.", 1500))
    assert response.status_code == 429 and response.headers["Retry-After"] == "2"
    assert json.loads(response.body)["error"]["retryAfterMs"] == 1500
    missing = error_response(NOT_YOURS)
    assert missing.status_code == 404 and "Retry-After" not in missing.headers
    assert json.loads(missing.body) == {"error": {"code": "not_found", "message": "No turn with that id belongs to you.",
                                                  "retryable": False}}


def test_a_turn_is_fresh_for_reuse_only_once_ended_and_since_the_moment_given():
    ended = _turn(status=Status.DONE, finished_at=1_000)
    assert ended.ended_since(1_000) and ended.ended_since(999) and not ended.ended_since(1_001)
    assert not _turn(status=Status.RUNNING, finished_at=1_000).ended_since(0)  # still running: nothing to reuse
    assert _turn(status=Status.ERROR, finished_at=5).ended_since(5)
