"""The stores against moto's DynamoDB: the conditional writes the lifecycle relies on."""
import threading

from chalicelib.turns.outcomes import Status
from chalicelib.turns.record import Turn


def test_a_checkpoint_writes_the_heartbeat_of_a_turn_nothing_was_asked_of(runtime):
    turns = runtime.turns
    turns.create(Turn(turn_id="t1", user_id="alice", connection_id="c1", prompt="hi", session_id="s1"))
    claimed = turns.claim("t1")
    before = turns.get("t1").checkpoint_at
    assert turns.checkpoint(claimed, 0, {"answer": "so far"}) is None  # written: nothing changed
    after = turns.get("t1")
    assert after.answer == "so far" and after.checkpoint_at >= before
    turns.attach("t1", "alice", "c2", from_seq=3)
    state = turns.checkpoint(claimed, 0)  # refused: a resume came in; the state says which
    assert state is not None and state.resumers == ["3:c2"] and state.status == Status.RUNNING


def test_concurrent_first_frames_of_a_window_are_all_counted_none_refused(runtime):
    runtime.connections.put("c1", "alice")
    results = []
    start = threading.Barrier(8)

    def frame():
        start.wait()
        results.append(runtime.connections.count_frame("c1", 3600, 30))

    threads = [threading.Thread(target=frame) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [0] * 8
    for _ in range(22):
        assert runtime.connections.count_frame("c1", 3600, 30) == 0
    assert runtime.connections.count_frame("c1", 3600, 30) > 0  # the 31st of the window is refused


def test_a_users_turns_in_flight_are_a_set_entered_and_left_idempotently(runtime):
    limits = runtime.rate_limits
    assert limits.enter_flight("alice", "t1", 2) and limits.enter_flight("alice", "t1", 2)
    assert limits.enter_flight("alice", "t2", 2)
    assert not limits.enter_flight("alice", "t3", 2)
    limits.leave_flight("alice", "t1")
    limits.leave_flight("alice", "t1")
    assert sorted(limits.in_flight("alice")) == ["t2"]
    assert limits.take("alice", 1.0, 5).allowed  # the bucket shares the item and still works


def test_every_field_of_a_turn_survives_the_table(runtime):
    """The record's field list is the one place a turn's fields are named: whatever is set there
    is written and read back, with its type (a status, dicts, lists, flags, numbers)."""
    from dataclasses import fields

    from chalicelib.protocol import ErrorCode

    turn = Turn(
        turn_id="t9", user_id="alice\0x", connection_id="c2", prompt="hi", session_id="s9", status=Status.ERROR,
        origin_connection_id="c1", conversation_id="conv", request_id="r9", memory_id="m9", trace=True,
        created_at=1, admitted_at=2, expires_at=3, claim_id="claim", claimed_at=4, checkpoint_at=5,
        cancel_requested=True, resumers=["0:c2", "3:c3"], answer="an answer", seq_ends="3,-,9",
        extras={"2": {"type": "trace"}}, error_code=ErrorCode.INTERNAL, error_message="m", error_retryable=True,
        stats={"chunks": 2}, control={"invocationId": "i"}, control_invocation_id="i",
        control_results={"invocationId": "i", "results": []}, paused_at=6, finished_at=7,
    )
    defaults = Turn(turn_id="", user_id="", connection_id="", prompt="", session_id="")
    unset = [f.name for f in fields(Turn) if getattr(turn, f.name) == getattr(defaults, f.name)]
    assert unset == [], "give every field a value here, so this test covers it"
    runtime.turns.create(turn)
    assert runtime.turns.get("t9") == turn
