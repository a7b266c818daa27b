import threading
import time

from chalicelib.coalesce import Outbox
from chalicelib.gateway import ConnectionGone
from chalicelib.relay import Relay


class Recorder:
    def __init__(self, delay=0.0, gone_after=None, fail_after=None):
        self.events = []
        self.delay = delay
        self.gone_after = gone_after
        self.fail_after = fail_after
        self.threads = set()
        self.to = []

    def __call__(self, connection_id, event):
        self.threads.add(threading.current_thread().name)
        if self.gone_after is not None and len(self.events) >= self.gone_after and connection_id == "c1":
            raise ConnectionGone("c1")
        if self.fail_after is not None and len(self.events) >= self.fail_after:
            raise RuntimeError("LimitExceededException")
        time.sleep(self.delay)
        self.events.append(event)
        self.to.append(connection_id)


def done(seq):
    return {"type": "done", "turnId": "t", "seq": seq}


def test_slow_posts_make_fewer_larger_frames_in_order():
    post = Recorder(delay=0.02)
    with Relay(post, Outbox("t", interval_s=0.001, max_frame_bytes=32 * 1024), "c1") as relay:
        for index in range(100):
            relay.text(f"{index} ")
            time.sleep(0.001)
        relay.close(done)
    chunks = [e for e in post.events if e["type"] == "chunk"]
    assert "".join(e["text"] for e in chunks) == "".join(f"{i} " for i in range(100))
    assert [e["seq"] for e in post.events] == list(range(1, len(post.events) + 1))
    assert post.events[-1]["type"] == "done"
    assert len(chunks) < 50  # posts took 20 ms while deltas came every ~1 ms
    assert post.threads == {"relay"}  # the reader never posted itself


def test_gone_stops_posting_but_the_turn_still_finishes():
    post = Recorder(gone_after=1)
    outbox = Outbox("t", interval_s=0, max_frame_bytes=32 * 1024)
    with Relay(post, outbox, "c1") as relay:
        relay.text("a")
        time.sleep(0.02)
        relay.text("b")
        time.sleep(0.02)
        relay.text("c")
        relay.close(done)
    assert relay.gone is True
    assert [e["text"] for e in post.events] == ["a"]
    assert outbox.closed and outbox.empty  # everything was numbered and dropped


def test_a_failing_post_does_not_kill_the_relay():
    post = Recorder(fail_after=0)
    with Relay(post, Outbox("t", interval_s=0, max_frame_bytes=32 * 1024), "c1") as relay:
        relay.text("a")
        relay.close(done)
    assert isinstance(relay.failed, RuntimeError)
    assert post.events == []


def test_leaving_the_block_without_finish_stops_the_thread():
    post = Recorder()
    try:
        with Relay(post, Outbox("t", interval_s=0, max_frame_bytes=32 * 1024), "c1") as relay:
            relay.text("a")
            raise KeyError("reader failed")
    except KeyError:
        pass
    assert not any(t.name == "relay" and t.is_alive() for t in threading.enumerate())


def test_attach_replays_the_answer_so_far_on_the_new_connection_then_continues():
    post = Recorder(gone_after=1)
    outbox = Outbox("t", interval_s=0, max_frame_bytes=32 * 1024)
    with Relay(post, outbox, "c1") as relay:
        relay.text("one ")
        time.sleep(0.05)
        relay.text("two ")  # c1 is gone by now: dropped
        time.sleep(0.05)
        assert relay.gone
        relay.attach("c2")
        time.sleep(0.05)
        relay.text("three")
        relay.close(done)
    on_c2 = [e for e, to in zip(post.events, post.to) if to == "c2"]
    assert "".join(e["text"] for e in on_c2 if e["type"] == "chunk") == "one two three"
    assert [e["seq"] for e in on_c2] == list(range(1, len(on_c2) + 1))
    assert on_c2[-1]["type"] == "done"
    assert relay.gone is False


def test_abandon_posts_nothing_more():
    post = Recorder()
    with Relay(post, Outbox("t", interval_s=10, max_frame_bytes=32 * 1024), "c1") as relay:
        relay.text("a")
        time.sleep(0.02)
        relay.text("b")
        relay.abandon()
    assert [e["text"] for e in post.events] == ["a"]
