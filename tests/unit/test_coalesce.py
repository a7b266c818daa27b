import json

from chalicelib.coalesce import Outbox, escaped_size, split_text
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
