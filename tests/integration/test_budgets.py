"""Per-user metering and token budgets on the local stack: a real WebSocket client, the converse
backend (the Bedrock emulator reports usage), moto's DynamoDB server.

The stack's daily budget is 1 token, so one turn spends it; the monthly budget is large, so only
the day's is spent and ``retryAfterMs`` is the time until the next UTC midnight.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Iterator, List

import pytest

from tests.support.faults import dynamodb, table_named, unique_user
from tests.support.frames import check_frame
from tests.support.stack import Stack, assert_one_well_formed_turn, ask, start_stack, stop_stack
from tests.support.timing import wait_until

pytestmark = pytest.mark.integration

MONTHLY = 10_000_000


@pytest.fixture(scope="module")
def budgeted() -> Iterator[Stack]:
    started = start_stack(BACKEND="converse", USER_DAILY_TOKEN_BUDGET="1", USER_MONTHLY_TOKEN_BUDGET=str(MONTHLY))
    yield started
    stop_stack(started)


def now_ms() -> int:
    return int(time.time() * 1000)


def next_utc_midnight_ms() -> int:
    today = datetime.now(timezone.utc).date()
    return int(datetime.combine(today + timedelta(days=1), datetime.min.time(), timezone.utc).timestamp() * 1000)


@pytest.fixture(autouse=True)
def not_at_midnight() -> None:
    """A day that ends during the test would reset the budget it is about."""
    if next_utc_midnight_ms() - now_ms() < 60_000:
        pytest.skip("within a minute of UTC midnight")


def metered_turns(stack: Stack, user: str) -> int:
    """The turns counted in the user's usage today, read from the table (no frames spent)."""
    db = dynamodb(stack)
    key = f"usage#{user}#day#{datetime.now(timezone.utc):%Y-%m-%d}"
    item = db.get_item(TableName=table_named(db, "rate-limits"), Key={"userId": {"S": key}}, ConsistentRead=True).get("Item")
    return int(item["turns"]["N"]) if item else 0


def usage(ws: Any) -> Dict[str, Any]:
    ws.send(json.dumps({"action": "usage"}))
    event = check_frame(ws.recv(timeout=10))  # as the schema documents it
    assert event["type"] == "usage", event
    return event


def test_a_spent_daily_budget_refuses_the_next_ask_until_utc_midnight(budgeted):
    user = unique_user("budget")
    with budgeted.connect(user) as ws:
        first = ask(ws, "hello budget", requestId="b-1")
        assert_one_well_formed_turn(first)
        done = first[-1]
        assert done["type"] == "done"
        spent = done["stats"]["usage"]
        assert spent["inputTokens"] + spent["outputTokens"] >= 1
        # The worker meters the turn just after it sent `done`.
        wait_until(lambda: metered_turns(budgeted, user) == 1, message="the turn was never metered")

        before = now_ms()
        ws.send(json.dumps({"prompt": "and another", "requestId": "b-2"}))
        refused = check_frame(ws.recv(timeout=10))
        after = now_ms()
        assert (refused["type"], refused["code"], refused["retryable"], refused["requestId"]) == (
            "error", "quota_exceeded", True, "b-2")
        midnight = next_utc_midnight_ms()
        assert midnight - after <= refused["retryAfterMs"] <= midnight - before  # until the next UTC midnight
        assert "daily budget is 1." in refused["message"]

        totals = usage(ws)
    today = datetime.now(timezone.utc)
    day, month = totals["day"], totals["month"]
    assert (day["period"], month["period"]) == (f"{today:%Y-%m-%d}", f"{today:%Y-%m}")
    for period in (day, month):
        assert (period["inputTokens"], period["outputTokens"]) == (spent["inputTokens"], spent["outputTokens"])
        assert period["turns"] == 1
    assert (day["budget"], month["budget"]) == (1, MONTHLY)
    assert 0 < day["resetsInMs"] <= month["resetsInMs"]


def frames_until_ends(ws: Any, turns: int, already: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The frames after ``already`` until ``turns`` turns have ended (their events interleave on one connection)."""
    frames: List[Dict[str, Any]] = []
    while sum(1 for frame in already + frames if frame.get("type") in ("done", "error")) < turns:
        frames.append(json.loads(ws.recv(timeout=30)))
    return frames


def test_concurrent_turns_of_one_user_are_all_counted(budgeted):
    """Four turns of one user in flight at once, on two connections, end together: no increment is
    lost. All four were admitted under the budget (it is checked when a turn starts), so together
    they take the user past it, and the next ask is refused."""
    user = unique_user("many")
    with budgeted.connect(user) as one, budgeted.connect(user) as two:
        received: Dict[Any, List[Dict[str, Any]]] = {one: [], two: []}
        for index, ws in enumerate([one, two, one, two]):
            # One after the other (asks racing for one user's token bucket may be refused), each
            # answer two seconds long: all four are in flight at once and end together.
            ws.send(json.dumps({"prompt": f"!slow 2 turn {index} of four", "conversationId": f"c-{index}"}))
            while sum(1 for frame in received[ws] if frame.get("type") == "accepted") < index // 2 + 1:
                received[ws].append(json.loads(ws.recv(timeout=10)))
        frames = [frame for ws in (one, two) for frame in received[ws] + frames_until_ends(ws, 2, received[ws])]
        dones = [frame for frame in frames if frame.get("type") == "done"]
        assert len(dones) == 4, [frame for frame in frames if frame.get("type") == "error"]
        wait_until(lambda: metered_turns(budgeted, user) == 4, message="not every turn was metered")
        totals = usage(one)
        for period in ("day", "month"):
            assert totals[period]["inputTokens"] == sum(done["stats"]["usage"]["inputTokens"] for done in dones)
            assert totals[period]["outputTokens"] == sum(done["stats"]["usage"]["outputTokens"] for done in dones)
            assert totals[period]["turns"] == 4
        over = ask(one, "a fifth")
        assert [(frame["type"], frame.get("code")) for frame in over] == [("error", "quota_exceeded")]
