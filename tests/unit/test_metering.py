"""Per-user metering and token budgets through the handlers and the stores, against moto.

The usage store's clock is fixed (2026-12-03 18:30 UTC), so every ``retryAfterMs`` is exact and
nothing sleeps: 5 h 30 min to the next day, 28 d 5 h 30 min to the next month.
"""
import threading
from dataclasses import replace

import boto3
import pytest

from chalicelib.backends.converse import ConverseBackend, ModelConfig
from chalicelib.store.usage import UsageStore, usage_key
from chalicelib.turns.report import TurnReport, report_turn
from chalicelib.usage import day, month, periods
from tests.support.events import sqs_event, ws_event
from tests.support.fakes import MemoryHistory
from tests.support.worker import drain_queue
from tests.unit.test_usage import HOUR, NOW, ms

UNTIL_MIDNIGHT = 5 * HOUR + 30 * 60_000
UNTIL_NEW_YEAR = 28 * 24 * HOUR + UNTIL_MIDNIGHT


class Clock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


@pytest.fixture
def clock(runtime):
    """The usage store's clock, fixed until a test moves it."""
    fixed = Clock(NOW)
    runtime.usage = UsageStore(runtime.clients.dynamodb, runtime.settings.rate_limits_table, clock=fixed)
    return fixed


@pytest.fixture
def budgets(runtime):
    def _budgets(daily=0, monthly=0):
        runtime.settings = replace(runtime.settings, user_daily_token_budget=daily, user_monthly_token_budget=monthly)

    return _budgets


def item(settings, key):
    return boto3.client("dynamodb").get_item(TableName=settings.rate_limits_table, Key=key).get("Item")


class DynamoCalls:
    """The DynamoDB operations the app's client makes (botocore's own event, before each call)."""

    def __init__(self, runtime) -> None:
        self.calls = []
        runtime.clients.dynamodb.meta.events.register("provide-client-params.dynamodb", self._record)

    def _record(self, params, model, **_):
        self.calls.append((model.name, params))

    def usage_keys(self, operation):
        """The usage items an operation named (rate-limits table keys that start ``usage#``)."""
        keys = [params.get("Key", {}).get("userId", {}).get("S", "") for name, params in self.calls if name == operation]
        return [key for key in keys if key.startswith("usage#")]


# ---- the store ---------------------------------------------------------------------------------

def test_a_turn_s_usage_is_added_to_its_day_and_its_month(runtime, clock, settings):
    usage = runtime.usage
    usage.add("alice", 120, 30)
    usage.add("alice", 5, 5)
    today, this_month = periods(NOW)
    assert usage.totals("alice", today) == usage.totals("alice", this_month)
    totals = usage.totals("alice", today)
    assert (totals.input_tokens, totals.output_tokens, totals.turns, totals.tokens) == (125, 35, 2, 160)
    assert usage.totals("bob", today).tokens == 0 and usage.totals("bob", today).turns == 0

    stored = item(settings, {"userId": {"S": "usage#alice#day#2026-12-03"}})
    assert stored["expiresAt"] == {"N": str(ms(2026, 12, 4) // 1000 + 7 * 86_400)}  # the table's TTL, a week on
    assert item(settings, {"userId": {"S": "usage#alice#month#2026-12"}})["turns"] == {"N": "2"}

    clock.now_ms = ms(2026, 12, 4, 0, 0, 1)  # the next day: a new day's count, the same month's
    usage.add("alice", 1, 1)
    assert usage.totals("alice", day(clock.now_ms)).tokens == 2
    assert usage.totals("alice", month(clock.now_ms)).tokens == 162


def test_usage_shares_the_rate_limits_table_without_touching_the_users_bucket(runtime, clock):
    assert runtime.rate_limits.take("alice", 1.0, 5).allowed
    runtime.usage.add("alice", 10, 10)
    assert usage_key("alice", day(NOW)) != {"userId": {"S": "alice"}}
    assert runtime.rate_limits.take("alice", 1.0, 5).allowed
    assert runtime.usage.totals("alice", day(NOW)).tokens == 20


def test_concurrent_turns_of_one_user_never_lose_an_increment(runtime, clock):
    """Many turns of one user end at once (a worker's threads, or many workers): every one counts.

    Each add is one UpdateItem ``ADD`` per period and nothing else: no read, so there is no
    read-modify-write for two adds to interleave in. moto's backend is serialized per call
    (``Serialized``), as DynamoDB applies each update atomically."""
    threads_n, adds_each = 16, 5
    calls = DynamoCalls(runtime)
    start = threading.Barrier(threads_n)
    failures = []

    def turn_ends(index):
        start.wait()
        try:
            for _ in range(adds_each):
                runtime.usage.add("alice", index + 1, 2 * index + 1)
        except Exception as error:  # noqa: BLE001 - reported below
            failures.append(error)

    threads = [threading.Thread(target=turn_ends, args=(index,)) for index in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    expected_in = adds_each * sum(index + 1 for index in range(threads_n))
    expected_out = adds_each * sum(2 * index + 1 for index in range(threads_n))
    for period in periods(NOW):
        totals = runtime.usage.totals("alice", period)
        assert (totals.input_tokens, totals.output_tokens, totals.turns) == (expected_in, expected_out, threads_n * adds_each)
    writes = [params for name, params in calls.calls if name != "GetItem"]
    assert {name for name, _ in calls.calls} == {"UpdateItem", "GetItem"}  # the reads are this test's totals()
    assert len(writes) == 2 * threads_n * adds_each
    assert all(params["UpdateExpression"].startswith("ADD ") and "ConditionExpression" not in params for params in writes)


# ---- metering: the report consumer -------------------------------------------------------------

def report(user="alice", input_tokens=None, output_tokens=None, outcome="done"):
    return TurnReport("t1", user, "c1", "s1", "converse", "local", outcome,
                      input_tokens=input_tokens, output_tokens=output_tokens)


def test_every_ended_turn_that_reports_usage_is_metered(runtime, clock):
    report_turn(runtime, report(input_tokens=40, output_tokens=2))
    report_turn(runtime, report(input_tokens=7, output_tokens=None, outcome="agent_error"))  # failed, but it cost tokens
    totals = runtime.usage.totals("alice", day(NOW))
    assert (totals.input_tokens, totals.output_tokens, totals.turns) == (47, 2, 2)


def test_a_turn_without_usage_writes_nothing(runtime, clock, settings):
    calls = DynamoCalls(runtime)
    report_turn(runtime, report())
    assert calls.usage_keys("UpdateItem") == []
    assert item(settings, usage_key("alice", day(NOW))) is None


def test_a_metering_failure_is_logged_and_never_raised(runtime, clock, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("DynamoDB is down")

    monkeypatch.setattr(runtime.usage, "add", broken)
    report_turn(runtime, report(input_tokens=1, output_tokens=1))  # no exception


# ---- budgets in ask ----------------------------------------------------------------------------

def test_a_spent_daily_budget_refuses_the_next_ask_until_midnight(conn, management, runtime, clock, budgets, settings, agent):
    budgets(daily=100)
    runtime.usage.add("alice", 60, 40)
    send = conn()
    send(prompt="one more?", requestId="r-1")
    (event,) = management.events("c1")
    assert event == {
        "type": "error",
        "code": "quota_exceeded",
        "message": "You have used 100 tokens today (UTC); your daily budget is 100. It resets in 5 h 30 min.",
        "retryable": True,
        "retryAfterMs": UNTIL_MIDNIGHT,
        "requestId": "r-1",
    }
    assert drain_queue(settings) == [] and agent.calls == []
    # Nothing was charged: no token from the bucket, no slot in flight.
    assert item(settings, {"userId": {"S": "alice"}}) is None
    connection = boto3.client("dynamodb").get_item(TableName=settings.connections_table, Key={"connectionId": {"S": "c1"}})
    assert connection["Item"].get("inFlight", {"N": "0"}) == {"N": "0"}


def test_under_budget_the_ask_is_accepted(conn, management, runtime, clock, budgets, settings):
    budgets(daily=100, monthly=1000)
    runtime.usage.add("alice", 60, 39)
    conn()(prompt="still fine")
    assert management.events("c1")[0]["type"] == "accepted"
    assert len(drain_queue(settings)) == 1


def test_budgets_are_per_user(conn, management, runtime, clock, budgets):
    budgets(daily=100)
    runtime.usage.add("alice", 100, 0)
    conn("c2", "bob")(prompt="hi")
    assert management.events("c2")[0]["type"] == "accepted"


def test_when_both_budgets_are_spent_the_wait_is_until_the_later_reset(conn, management, runtime, clock, budgets):
    budgets(daily=100, monthly=150)
    runtime.usage.add("alice", 100, 50)
    conn()(prompt="and now?")
    (event,) = management.events("c1")
    assert (event["code"], event["retryAfterMs"]) == ("quota_exceeded", UNTIL_NEW_YEAR)
    assert "monthly budget is 150" in event["message"] and "28 d 5 h" in event["message"]


def test_a_spent_monthly_budget_alone_waits_for_the_month(conn, management, runtime, clock, budgets):
    budgets(monthly=150)
    clock.now_ms = ms(2026, 12, 2, 9)
    runtime.usage.add("alice", 150, 0)  # yesterday: today's count is 0, the month's is spent
    clock.now_ms = NOW
    conn()(prompt="hello?")
    (event,) = management.events("c1")
    assert (event["code"], event["retryAfterMs"]) == ("quota_exceeded", UNTIL_NEW_YEAR)


def test_a_refused_request_id_runs_once_the_period_resets(conn, management, runtime, clock, budgets, settings):
    budgets(daily=100)
    runtime.usage.add("alice", 100, 0)
    send = conn()
    send(prompt="tomorrow", requestId="r-7")
    assert management.events("c1")[-1]["code"] == "quota_exceeded"
    send(prompt="tomorrow", requestId="r-7")  # still the same day: refused again, not a duplicate
    assert management.events("c1")[-1]["code"] == "quota_exceeded"
    clock.now_ms = ms(2026, 12, 4, 0, 0, 1)
    send(prompt="tomorrow", requestId="r-7")
    accepted = management.events("c1")[-1]
    assert accepted["type"] == "accepted" and "duplicate" not in accepted
    assert len(drain_queue(settings)) == 1


def test_without_budgets_an_ask_reads_no_usage(conn, management, runtime, clock, budgets):
    budgets(daily=0, monthly=0)
    runtime.usage.add("alice", 10**9, 10**9)
    send = conn()
    calls = DynamoCalls(runtime)
    send(prompt="free for all")
    assert management.events("c1")[0]["type"] == "accepted"
    assert calls.usage_keys("GetItem") == []


def test_a_daily_budget_alone_reads_only_the_day(conn, runtime, clock, budgets):
    budgets(daily=100)
    send = conn()
    calls = DynamoCalls(runtime)
    send(prompt="hi")
    assert calls.usage_keys("GetItem") == ["usage#alice#day#2026-12-03"]


class FakeConverse:
    """``converse_stream`` answering every turn with one text and the usage it reports."""

    def __init__(self, input_tokens, output_tokens):
        self.usage = {"inputTokens": input_tokens, "outputTokens": output_tokens, "totalTokens": input_tokens + output_tokens}
        self.calls = []

    def converse_stream(self, **params):
        self.calls.append(params)
        events = [
            {"messageStart": {"role": "assistant"}},
            {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "An answer."}}},
            {"contentBlockStop": {"contentBlockIndex": 0}},
            {"messageStop": {"stopReason": "end_turn"}},
            {"metadata": {"usage": self.usage, "metrics": {"latencyMs": 9}}},
        ]
        return {"stream": (event for event in events)}  # botocore's EventStream can be closed; so can a generator


def test_the_worker_meters_each_turn_and_the_budget_refuses_the_next(conn, management, runtime, client, clock, budgets, settings):
    """The whole loop: a turn ends with usage in `done`, the worker adds it, the next ask is refused."""
    budgets(daily=50)
    model = FakeConverse(30, 20)
    runtime.backend = ConverseBackend(model, MemoryHistory(), ModelConfig("m"))
    send = conn()
    send(prompt="first")
    assert client.lambda_.invoke("turn_worker", sqs_event(drain_queue(settings))).payload == {"batchItemFailures": []}
    done = management.events("c1")[-1]
    assert done["type"] == "done" and done["stats"]["usage"]["totalTokens"] == 50
    totals = runtime.usage.totals("alice", day(NOW))
    assert (totals.input_tokens, totals.output_tokens, totals.turns) == (30, 20, 1)

    send(prompt="second")
    refused = management.events("c1")[-1]
    assert (refused["code"], refused["retryable"], refused["retryAfterMs"]) == ("quota_exceeded", True, UNTIL_MIDNIGHT)
    assert drain_queue(settings) == [] and len(model.calls) == 1  # nothing more reached Bedrock


# ---- the usage action --------------------------------------------------------------------------

def test_usage_answers_the_user_s_totals_and_budgets(conn, management, runtime, clock, budgets):
    budgets(daily=100_000)
    runtime.usage.add("alice", 1200, 80)
    runtime.usage.add("bob", 5, 5)
    conn()(action="usage")
    (event,) = management.events("c1")
    assert event == {
        "type": "usage",
        "day": {"period": "2026-12-03", "inputTokens": 1200, "outputTokens": 80, "turns": 1, "budget": 100_000,
                "resetsInMs": UNTIL_MIDNIGHT},
        "month": {"period": "2026-12", "inputTokens": 1200, "outputTokens": 80, "turns": 1, "budget": None,
                  "resetsInMs": UNTIL_NEW_YEAR},
    }


def test_usage_of_a_new_user_is_zero(conn, management, clock):
    conn("c9", "newcomer")(action="usage")
    (event,) = management.events("c9")
    assert event["day"]["turns"] == event["month"]["inputTokens"] == 0 and event["day"]["budget"] is None


def test_usage_counts_against_the_connection_s_frame_allowance(conn, management, runtime, clock):
    runtime.settings = replace(runtime.settings, frame_limit=2, frame_window_s=60)
    send = conn()
    for _ in range(3):
        send(action="usage")
    assert [e["type"] for e in management.events("c1")] == ["usage", "usage", "error"]
    assert management.events("c1")[-1]["code"] == "rate_limited"


def test_usage_needs_a_signed_in_connection(client, management, clock):
    client.lambda_.invoke("websocket_message", ws_event("$default", "stranger", body='{"action": "usage"}'))
    (event,) = management.events("stranger")
    assert event["code"] == "unauthorized"
