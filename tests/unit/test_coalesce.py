import json

from chalicelib.turns.outbox import Outbox, decode_ends, encode_ends, escaped_size, replay, split_text
from chalicelib.protocol import encode


def _texts(events):
    return [event["text"] for event in events if event["type"] == "chunk"]


def test_first_text_goes_out_at_once_then_at_most_once_per_interval():
    box = Outbox("t", interval_s=0.05, max_frame_bytes=32 * 1024)
    box.add_text("Hel")
    assert _texts(box.take(now=0.0)) == ["Hel"]
    box.add_text("lo")
    box.add_text(", ")
    assert box.take(now=0.01) == []  # inside the interval: held
    assert box.wait(now=0.01) == 0.04
    box.add_text("world")
    events = box.take(now=0.05)
    assert _texts(events) == ["lo, world"]  # three deltas, one message
    assert [event["seq"] for event in events] == [2]
    assert box.wait(now=0.06) is None  # nothing pending


def test_an_event_flushes_the_text_before_it_in_order():
    box = Outbox("t", interval_s=10, max_frame_bytes=32 * 1024)
    box.add_text("a")
    box.take(now=0.0)
    box.add_text("b")
    box.add_event(lambda seq: {"type": "trace", "turnId": "t", "seq": seq, "trace": {}})
    box.add_text("c")
    events = box.take(now=0.001)
    assert [(event["type"], event["seq"]) for event in events] == [("chunk", 2), ("trace", 3), ("chunk", 4)]


def test_close_flushes_everything_and_numbers_the_terminal_last():
    box = Outbox("t", interval_s=10, max_frame_bytes=32 * 1024)
    box.add_text("a")
    box.take(now=0.0)
    box.add_text("b")
    box.close(lambda seq: {"type": "done", "turnId": "t", "seq": seq})
    events = box.take(now=0.0)
    assert [event["type"] for event in events] == ["chunk", "done"]
    assert events[-1]["seq"] == 3
    assert box.closed and box.empty
    assert box.chunks == 2


def test_a_full_frame_of_text_is_posted_without_waiting_for_the_interval():
    box = Outbox("t", interval_s=10, max_frame_bytes=1024)
    box.add_text("x")
    box.take(now=0.0)
    box.add_text("y" * 2000)
    events = box.take(now=0.001)
    assert "".join(_texts(events)) == "y" * 2000
    assert all(len(encode(event)) <= 1024 for event in events)
    budget = 1024 - len(encode({"type": "chunk", "turnId": "t", "seq": 10**9, "text": ""}))
    assert len(events) == -(-2000 // budget)  # as few frames as fit


def test_first_chunk_time_is_recorded_once():
    box = Outbox("t", interval_s=0, max_frame_bytes=1024)
    box.add_text("a")
    box.take(now=1.5)
    box.add_text("b")
    box.take(now=2.0)
    assert box.first_chunk_at == 1.5


def test_oversized_trace_is_replaced_by_a_note():
    box = Outbox("t", interval_s=0, max_frame_bytes=1024)
    box.add_event(lambda seq: {"type": "trace", "turnId": "t", "seq": seq, "trace": {"blob": "z" * 5000}})
    (event,) = box.take(now=0.0)
    assert event["trace"]["truncated"] is True
    assert len(encode(event)) <= 1024


def test_escaped_size_matches_json():
    for char in ['a', '"', "\\", "\n", "\x01", "é", "€", "😀", "\u2028"]:
        assert escaped_size(char) == len(json.dumps(char, ensure_ascii=False).encode()) - 2


def test_split_text_respects_the_budget_and_loses_nothing():
    text = ('He said "hi"\n' + "é€😀" * 50 + "\x00") * 40
    pieces = split_text(text, budget=200)
    assert "".join(pieces) == text
    assert len(pieces) > 1
    for piece in pieces:
        assert len(json.dumps(piece, ensure_ascii=False).encode()) - 2 <= 200


def test_split_text_short_text_is_one_piece():
    assert split_text("hello", budget=100) == ["hello"]


def _trace(seq):
    return {"type": "trace", "turnId": "t", "seq": seq, "trace": {"kind": "rationale"}}


def _streamed(box):
    """Stream a turn the way a slow agent does: text, a trace, more text, over several takes."""
    box.add_text("one ")
    box.take(now=0.0)
    box.add_text("two ")
    box.add_event(_trace)
    box.add_text("three")
    return box.take(now=1.0)


def test_a_resume_gets_the_same_events_with_the_same_seqs_from_where_it_asks():
    box = Outbox("t", interval_s=0.05, max_frame_bytes=32 * 1024)
    _streamed(box)
    box.rewind(from_seq=2, preamble={"type": "accepted", "turnId": "t"})
    again = box.take(now=2.0)
    assert again == [{"type": "accepted", "turnId": "t"}, _trace(3), {"type": "chunk", "turnId": "t", "seq": 4, "text": "three"}]
    box.add_text(" four")
    assert [e["seq"] for e in box.take(now=3.0)] == [5]  # and the turn numbers on from there


def test_a_finished_turn_replays_from_its_persisted_ends_numbered_as_streamed():
    box = Outbox("t", interval_s=0.05, max_frame_bytes=32 * 1024)
    _streamed(box)
    box.close(lambda seq: {"type": "done", "turnId": "t", "seq": seq})
    live = box.take(now=2.0)
    ends, extras = decode_ends(encode_ends(box.ends)), box.extras()
    assert ends == [4, 8, None, 13]
    text = "one two three"
    done = lambda seq: {"type": "done", "turnId": "t", "seq": seq}  # noqa: E731
    everything = replay("t", text, done, 32 * 1024, ends, extras)
    assert [(e["type"], e["seq"]) for e in everything] == [("chunk", 1), ("chunk", 2), ("trace", 3), ("chunk", 4), ("done", 5)]
    assert live[-1] == everything[-1]
    assert replay("t", text, done, 32 * 1024, ends, extras, from_seq=3) == everything[3:]
    assert replay("t", text, done, 32 * 1024, ends, extras, from_seq=5) == []


def test_text_saved_beyond_the_numbered_frames_follows_them():
    """A worker that died had saved more text than it numbered: a replay sends it after the frames."""
    done = lambda seq: {"type": "error", "turnId": "t", "seq": seq}  # noqa: E731
    events = replay("t", "one two three", done, 32 * 1024, [4], {})
    assert [(e.get("text"), e["seq"]) for e in events] == [("one ", 1), ("two three", 2), (None, 3)]


def test_a_turn_recorded_without_ends_replays_whole_in_as_few_frames_as_fit():
    events = replay("t", "x" * 100_000, lambda seq: {"type": "done", "turnId": "t", "seq": seq}, 32 * 1024)
    assert "".join(e["text"] for e in events[:-1]) == "x" * 100_000
    assert len(events) == 5 and events[-1]["seq"] == 5


def test_files_are_kept_for_replays_without_their_content():
    box = Outbox("t", interval_s=0, max_frame_bytes=32 * 1024)
    box.add_event(lambda seq: {"type": "files", "turnId": "t", "seq": seq, "files": [{"name": "a.csv", "content": "eHk="}]})
    box.take(now=0.0)
    (kept,) = box.extras().values()
    assert kept["files"][0]["name"] == "a.csv" and "content" not in kept["files"][0]
