"""Ask (idempotency, rate limits), resume and cancel through the handlers, against moto."""
import base64
import json
import threading
from dataclasses import replace

import boto3
import pytest

from tests.support.events import ws_event
from tests.support.worker import drain_queue, run_queued as work
from chalicelib.turns.outcomes import CANCELLED
from tests.support.fakes import agent_stream, client_error, until


def test_a_repeated_request_id_names_the_original_turn(conn, management, settings, client, agent):
    send = conn()
    send(prompt="hi", requestId="r-1")
    send(prompt="hi again", requestId="r-1")
    first, second = management.events("c1")
    assert first["type"] == second["type"] == "accepted"
    assert second["turnId"] == first["turnId"] and second["duplicate"] is True
    work(client, settings)
    assert len(agent.calls) == 1


def test_request_ids_are_per_user(conn, management):
    conn("c1", "alice")(prompt="hi", requestId="same")
    conn("c2", "bob")(prompt="hi", requestId="same")
    assert management.events("c1")[0]["turnId"] != management.events("c2")[0]["turnId"]


def test_the_per_user_token_bucket_limits_asks(conn, management, runtime, settings):
    runtime.settings = replace(runtime.settings, rate_burst=2, rate_per_s=0.1)
    send = conn()
    for index in range(3):
        send(prompt=f"q{index}")
    events = management.events("c1")
    assert [e["type"] for e in events] == ["accepted", "accepted", "error"]
    limited = events[-1]
    assert (limited["code"], limited["retryable"]) == ("rate_limited", True)
    assert 9000 <= limited["retryAfterMs"] <= 10000
    assert len(drain_queue(settings)) == 2


def test_a_connection_has_a_cap_on_turns_in_flight(conn, management, runtime, client, settings):
    runtime.settings = replace(runtime.settings, max_turns_in_flight=2)
    send = conn()
    for index in range(3):
        send(prompt=f"q{index}")
    assert [e.get("code") for e in management.events("c1")] == [None, None, "rate_limited"]
    work(client, settings)  # both finish: the connection has room again
    send(prompt="q4")
    assert management.events("c1")[-1]["type"] == "accepted"


def test_resume_replays_a_finished_turn_from_seq_1(conn, management, client, settings, agent):
    agent.script = agent_stream("Hel", "lo")
    conn("c1")(prompt="hi")
    turn_id = management.events("c1")[0]["turnId"]
    work(client, settings)
    conn("c2")(action="resume", turnId=turn_id)
    events = management.events("c2")
    assert events[0] == {"type": "accepted", "turnId": turn_id}
    assert [(e["type"], e["seq"]) for e in events[1:]] == [("chunk", 1), ("done", 2)]
    assert events[1]["text"] == "Hello"
    assert events[2]["stats"]["characters"] == 5


def test_resume_of_a_queued_turn_moves_it_to_the_new_connection(conn, management, client, settings):
    conn("c1")(prompt="hi")
    turn_id = management.events("c1")[0]["turnId"]
    conn("c2")(action="resume", turnId=turn_id)
    work(client, settings)
    # The asking connection is told, as its terminal event, that the turn went elsewhere.
    assert [(e["type"], e.get("code")) for e in management.events("c1")] == [("accepted", None), ("error", "superseded")]
    assert [e["type"] for e in management.events("c2")] == ["accepted", "chunk", "done"]


@pytest.mark.parametrize("action", ["resume", "cancel"])
def test_another_users_turn_does_not_exist_for_them(conn, management, settings, action):
    conn("c1", "alice")(prompt="hi")
    turn_id = management.events("c1")[0]["turnId"]
    conn("c2", "mallory")(action=action, turnId=turn_id)
    (event,) = management.events("c2")
    assert (event["type"], event["code"], event["retryable"]) == ("error", "not_found", False)
    conn("c3", "mallory")(action=action, turnId="no-such-turn")
    assert management.events("c3")[0]["message"] == event["message"]  # indistinguishable


def test_cancel_a_queued_turn_ends_it_and_the_worker_skips_it(conn, management, client, settings, agent):
    send = conn()
    send(prompt="hi")
    turn_id = management.events("c1")[0]["turnId"]
    send(action="cancel", turnId=turn_id)
    work(client, settings)
    assert agent.calls == []
    events = management.events("c1")
    assert [(e["type"], e.get("code")) for e in events] == [("accepted", None), ("error", "cancelled")]
    assert events[1]["retryable"] is False and events[1]["seq"] == 1


def test_cancel_a_finished_turn_says_so(conn, management, client, settings):
    send = conn()
    send(prompt="hi")
    turn_id = management.events("c1")[0]["turnId"]
    work(client, settings)
    send(action="cancel", turnId=turn_id)
    last = management.events("c1")[-1]
    assert (last["code"], "turnId" in last) == ("invalid_request", False)


def test_cancel_of_a_running_turn_is_picked_up_by_its_worker(conn, management, client, settings, agent, runtime):
    runtime.settings = replace(runtime.settings, control_interval_ms=50)
    send = conn()
    send(prompt="hi")
    turn_id = management.events("c1")[0]["turnId"]

    def cancel_midway():
        send(action="cancel", turnId=turn_id)

    def cancelled():  # the watcher saw the cancel and ended the turn
        return any(e.get("code") == "cancelled" for e in management.events("c1"))

    agent.script = [{"chunk": {"bytes": b"one "}}, cancel_midway, until(cancelled), {"chunk": {"bytes": b"two"}}]
    work(client, settings)
    events = [e for e in management.events("c1") if e["type"] != "accepted"]
    assert events[-1]["code"] == "cancelled"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert "two" not in "".join(e.get("text", "") for e in events)
    assert runtime.turns.get(turn_id).error_code == "cancelled"


def test_resume_of_a_turn_whose_worker_died_ends_it_as_interrupted(conn, management, runtime, settings):
    conn("c1")(prompt="hi")
    turn_id = management.events("c1")[0]["turnId"]
    runtime.turns.claim(turn_id)
    boto3.client("dynamodb").update_item(
        TableName=settings.turns_table,
        Key={"turnId": {"S": turn_id}},
        UpdateExpression="SET checkpointAt = :t",
        ExpressionAttributeValues={":t": {"N": "0"}},
    )
    conn("c2")(action="resume", turnId=turn_id)
    accepted, error = management.events("c2")
    assert accepted["type"] == "accepted"
    assert (error["code"], error["retryable"], error["seq"]) == ("interrupted", True, 1)
    asked_on = boto3.client("dynamodb").get_item(TableName=settings.connections_table, Key={"connectionId": {"S": "c1"}})
    assert asked_on["Item"]["inFlight"] == {"N": "0"}  # the dead turn no longer counts against c1


RETURN_CONTROL = {
    "returnControl": {
        "invocationId": "inv-1",
        "invocationInputs": [{"functionInvocationInput": {"actionGroup": "g", "function": "lookup", "parameters": []}}],
    }
}
RESULTS = [{"functionResult": {"actionGroup": "g", "function": "lookup", "responseBody": {"TEXT": {"body": "42"}}}}]


@pytest.fixture
def paused(conn, management, client, settings, agent):
    """alice asked; the agent asked her client to run a tool; the turn waits."""
    agent.script = [{"chunk": {"bytes": b"Let me check. "}}, RETURN_CONTROL]
    send = conn("c1", "alice")
    send(prompt="what is the answer?")
    turn_id = management.events("c1")[0]["turnId"]
    work(client, settings)
    return send, turn_id


def test_return_control_round_trip(paused, management, client, settings, agent, runtime):
    send, turn_id = paused
    events = management.events("c1")
    assert [e["type"] for e in events] == ["accepted", "chunk", "return_control"]
    request = events[-1]
    assert (request["invocationId"], request["seq"]) == ("inv-1", 2)
    assert request["inputs"][0]["functionInvocationInput"]["function"] == "lookup"
    assert runtime.turns.get(turn_id).status == "waiting"

    agent.script = agent_stream("The answer is 42.")
    send(action="return_control", turnId=turn_id, invocationId="inv-1", results=RESULTS)
    work(client, settings)
    after = management.events("c1")[3:]
    assert after[0] == {"type": "accepted", "turnId": turn_id}
    # After `accepted` the turn is told again from seq 1: the answer so far, then the rest.
    assert [e["seq"] for e in after[1:]] == list(range(1, len(after)))
    assert "".join(e.get("text", "") for e in after) == "Let me check. The answer is 42."
    assert after[-1]["type"] == "done"
    second_call = agent.calls[-1]
    assert second_call["sessionState"] == {"invocationId": "inv-1", "returnControlInvocationResults": RESULTS}
    assert second_call["sessionId"] == agent.calls[0]["sessionId"]
    assert runtime.turns.get(turn_id).answer == "Let me check. The answer is 42."


def test_results_for_another_invocation_are_refused(paused, management, client, settings, agent):
    send, turn_id = paused
    send(action="return_control", turnId=turn_id, invocationId="not-it", results=RESULTS)
    error = management.events("c1")[-1]
    assert (error["code"], error["retryable"]) == ("invalid_request", False)
    assert drain_queue(settings) == [] and len(agent.calls) == 1


def test_another_user_cannot_answer_for_the_turn(paused, conn, management):
    _, turn_id = paused
    conn("c9", "mallory")(action="return_control", turnId=turn_id, invocationId="inv-1", results=RESULTS)
    assert management.events("c9")[0]["code"] == "not_found"


def test_resume_of_a_waiting_turn_repeats_the_request(paused, conn, management):
    _, turn_id = paused
    conn("c2", "alice")(action="resume", turnId=turn_id)
    events = management.events("c2")
    assert [(e["type"], e.get("seq")) for e in events] == [("accepted", None), ("chunk", 1), ("return_control", 2)]
    assert events[-1]["invocationId"] == "inv-1"


def test_cancel_of_a_waiting_turn(paused, management, runtime):
    send, turn_id = paused
    send(action="cancel", turnId=turn_id)
    cancelled = management.events("c1")[-1]
    assert cancelled["code"] == "cancelled" and "seq" not in cancelled  # its numbering was the client's
    assert runtime.turns.get(turn_id).status == "error"


def test_resume_on_the_same_connection_replays_a_running_turn(conn, management, client, settings, agent, runtime):
    runtime.settings = replace(runtime.settings, control_interval_ms=20)
    send = conn()
    send(prompt="hi")
    turn_id = management.events("c1")[0]["turnId"]

    def resume_here():  # the client heard nothing for a while (a post failed) and asks again
        send(action="resume", turnId=turn_id)

    def posted(n):  # n chunks reached c1 (the replay's first is the second)
        return lambda: len([e for e in management.events("c1") if e["type"] == "chunk"]) >= n

    agent.script = [{"chunk": {"bytes": b"one "}}, until(posted(1)), resume_here, until(posted(2)), {"chunk": {"bytes": b"two"}}]
    work(client, settings)
    events = management.events("c1")
    again = max(i for i, e in enumerate(events) if e["type"] == "accepted")
    assert again > 0
    replayed = events[again + 1 :]
    assert [e["seq"] for e in replayed] == list(range(1, len(replayed) + 1))
    assert "".join(e.get("text", "") for e in replayed) == "one two"
    assert replayed[-1]["type"] == "done"


def test_files_are_delivered_inline_or_described(conn, management, client, settings, agent):
    small, big = b"a,b\n1,2\n", b"x" * (20 * 1024)
    agent.script = [
        {"files": {"files": [{"name": "small.csv", "type": "text/csv", "bytes": small}, {"name": "big.bin", "type": "application/octet-stream", "bytes": big}]}},
        {"chunk": {"bytes": b"Here are your files."}},
    ]
    conn()(prompt="make files")
    work(client, settings)
    files = [e for e in management.events("c1") if e["type"] == "files"]
    assert len(files) == 2
    first, second = files[0]["files"][0], files[1]["files"][0]
    assert (first["name"], first["size"], base64.b64decode(first["content"])) == ("small.csv", len(small), small)
    assert second["size"] == len(big) and "content" not in second and "Too large" in second["note"]
    assert all(len(data) <= 32 * 1024 for _, data in management.posts)


def test_concurrent_asks_with_one_request_id_are_one_turn_one_token_one_slot(conn, management, runtime, settings):
    """Ten asks with one requestId at the same moment, on two connections: all answered as the
    one turn (never rate_limited by each other), one token spent, one slot held, one message queued."""
    from chalicelib.handlers import messages

    runtime.settings = replace(runtime.settings, rate_burst=1, rate_per_s=0.001, max_turns_in_flight=1)
    conn("c1")
    conn("c2")
    body = json.dumps({"prompt": "hi", "requestId": "same"})
    start = threading.Barrier(10)

    def ask(connection_id):
        start.wait()
        messages.message(runtime, ws_event("$default", connection_id, body=body))

    threads = [threading.Thread(target=ask, args=(f"c{1 + index % 2}",)) for index in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events = management.events()
    assert [e["type"] for e in events] == ["accepted"] * 10, events
    assert len({e["turnId"] for e in events}) == 1
    assert sum(1 for e in events if not e.get("duplicate")) == 1
    assert len(drain_queue(settings)) == 1
    assert runtime.rate_limits.take("alice", 0.001, 1).allowed is False  # the one token was spent once
    assert runtime.rate_limits.in_flight("alice") == [events[0]["turnId"]]
    in_flight = [int(runtime.clients.dynamodb.get_item(TableName=settings.connections_table,
                                                        Key={"connectionId": {"S": c}})["Item"]["inFlight"]["N"])
                 for c in ("c1", "c2")]
    assert sum(in_flight) == 1


def test_a_request_id_whose_turn_failed_retryably_runs_again(conn, management, client, settings, agent, runtime):
    send = conn()
    agent.script = client_error("InternalServerException", status=500)
    send(prompt="hi", requestId="r-again")
    work(client, settings)
    assert management.events("c1")[-1]["code"] == "agent_error" and management.events("c1")[-1]["retryable"] is True
    agent.script = agent_stream("second ", "time")
    send(prompt="hi", requestId="r-again")
    accepted = management.events("c1")[-1]
    assert accepted["type"] == "accepted" and not accepted.get("duplicate")
    work(client, settings)
    assert management.events("c1")[-1]["type"] == "done"
    assert runtime.turns.get(accepted["turnId"]).answer == "second time"


def test_a_request_id_whose_turn_failed_for_good_is_answered_as_that_turn(conn, management, client, settings, agent):
    send = conn()
    agent.script = client_error("ValidationException")
    send(prompt="hi", requestId="r-final")
    work(client, settings)
    assert management.events("c1")[-1]["retryable"] is False
    send(prompt="hi", requestId="r-final")
    assert management.events("c1")[-1].get("duplicate") is True
    assert drain_queue(settings) == []


def test_a_user_has_a_cap_on_turns_in_flight_across_connections(conn, management, runtime, client, settings):
    runtime.settings = replace(runtime.settings, max_user_turns_in_flight=2, max_turns_in_flight=5)
    for connection_id, prompt in (("c1", "q1"), ("c2", "q2"), ("c3", "q3")):
        conn(connection_id)(prompt=prompt)
    third = management.events("c3")[-1]
    assert (third["type"], third["code"]) == ("error", "rate_limited") and "turns in flight" in third["message"]
    assert runtime.connections.enter_flight("c3", 1)  # the refused ask gave its connection slot back
    runtime.connections.leave_flight("c3")
    work(client, settings)  # both finish: the user has room again
    conn("c3")(prompt="q4")
    assert management.events("c3")[-1]["type"] == "accepted"


def test_a_slot_held_by_a_turn_that_ended_without_giving_it_back_is_reclaimed(conn, management, runtime, settings):
    runtime.settings = replace(runtime.settings, max_user_turns_in_flight=1)
    send = conn()
    send(prompt="q1")
    first = management.events("c1")[-1]["turnId"]
    runtime.turns.end_unclaimed(first, "alice", CANCELLED)  # ended, but its slot was never released
    send(prompt="q2")
    assert management.events("c1")[-1]["type"] == "accepted"


def test_a_request_id_whose_ask_died_before_admitting_its_turn_runs_again(conn, management, runtime, settings):
    """The first ask recorded the turn, then its Lambda died before the rate limits let it through:
    the turn would never run, so the same requestId a minute later starts it for good."""
    from chalicelib.store import now_ms
    from chalicelib.turns import ids
    from chalicelib.turns.record import Turn

    send = conn()
    turn_id = ids.turn_id("alice", "r-orphan")
    runtime.turns.create(Turn(turn_id=turn_id, user_id="alice", connection_id="c1", prompt="hi", session_id="s",
                              request_id="r-orphan", created_at=now_ms() - 120_000))
    send(prompt="hi", requestId="r-orphan")
    accepted = management.events("c1")[-1]
    assert (accepted["type"], accepted["turnId"], accepted.get("duplicate")) == ("accepted", turn_id, None)
    assert len(drain_queue(settings)) == 1
