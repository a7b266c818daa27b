"""The relay never goes silent: posts that fail mid-answer, and a claim DynamoDB throttles.

One local stack whose queue would hold a message back for ten minutes if the worker gave up on a
claim, so an answer that arrives at all proves the claim was retried in the worker; and short
retries (botocore tries each post twice, the relay eight times, from 50 ms), so the faults play
out in seconds instead of botocore's backoff of up to 20 s a try.
"""
from __future__ import annotations

import json
from typing import Any, Dict, Iterator, List

import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.faults import inject, unique_user, wait_for_connection
from tests.support.stack import (
    Stack,
    answer_of,
    assert_one_well_formed_turn,
    receive_turn,
    start_stack,
    stop_stack,
    until_chunk,
)

pytestmark = pytest.mark.integration

SLOW = "!slow 3 one two three four five six seven eight nine ten"
WHOLE = "You said: " + SLOW


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    started = start_stack(VISIBILITY_TIMEOUT_S="600", POST_MAX_ATTEMPTS="2", RELAY_POST_ATTEMPTS="8", RELAY_RETRY_BASE_MS="50")
    yield started
    stop_stack(started)


def first_chunk(ws: Any) -> List[Dict[str, Any]]:
    """Ask the slow question and read up to its first chunk: a point in the turn, not a time."""
    ws.send(json.dumps({"prompt": SLOW}))
    return until_chunk(ws)


@pytest.mark.parametrize(
    "fault",
    [
        {"fail_posts": 1, "status": 403, "error": "ForbiddenException"},
        {"fail_posts": 1, "status": 400, "error": "BadRequestException"},
        # A slow client's full buffer: more 429s than botocore's retries of one post absorb.
        {"fail_posts": 10, "status": 429, "error": "LimitExceededException"},
    ],
    ids=["403", "400", "10x429"],
)
def test_a_post_that_fails_mid_answer_is_retried_and_the_answer_ends(stack, fault):
    user = unique_user("refused")
    with stack.connect(user) as ws:
        connection_id = wait_for_connection(stack, user)
        events = first_chunk(ws)
        inject(stack, connection=connection_id, **fault)
        events += receive_turn(ws, timeout=60)
    assert_one_well_formed_turn(events)
    assert events[-1]["type"] == "done"
    assert answer_of(events) == WHOLE


def test_a_connection_that_keeps_refusing_posts_is_closed_and_the_resume_gets_it_all(stack):
    user = unique_user("closed")
    with stack.connect(user) as ws:
        connection_id = wait_for_connection(stack, user)
        turn_id = first_chunk(ws)[0]["turnId"]
        inject(stack, connection=connection_id, fail_posts=10_000, status=403, error="ForbiddenException")
        with pytest.raises(ConnectionClosed):  # closed by the server: never an open, silent socket
            while True:
                ws.recv(timeout=30)
    with stack.connect(user) as ws:
        ws.send(json.dumps({"action": "resume", "turnId": turn_id}))
        events = receive_turn(ws, timeout=30)
    assert_one_well_formed_turn(events)
    assert answer_of(events) == WHOLE


def test_a_throttled_claim_is_retried_by_the_worker_not_after_the_visibility_timeout(stack):
    # 6 throttles: more than botocore's own 3 attempts absorb, so without the worker's retry the
    # message would wait out the 600 s visibility timeout and this turn would not end in time.
    inject(stack, throttle_dynamodb=6, matching="claimId")
    with stack.connect(unique_user("claim")) as ws:
        ws.send(json.dumps({"prompt": "hello"}))
        events = receive_turn(ws, timeout=60)
    assert_one_well_formed_turn(events)
    assert answer_of(events) == "You said: hello"
