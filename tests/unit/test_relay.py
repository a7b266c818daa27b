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

    def __call__(self, event):
        self.threads.add(threading.current_thread().name)
        if self.gone_after is not None and len(self.events) >= self.gone_after:
            raise ConnectionGone("c")
        if self.fail_after is not None and len(self.events) >= self.fail_after:
            raise RuntimeError("LimitExceededException")
        time.sleep(self.delay)
        self.events.append(event)


def done(seq):
    return {"type": "done", "turnId": "t", "seq": seq}


def test_slow_posts_make_fewer_larger_frames_in_order():
    post = Recorder(delay=0.02)
    with Relay(post, Outbox("t", interval_s=0.001, max_frame_bytes=32 * 1024)) as relay:
        for index in range(100):
            relay.text(f"{index} ")
            time.sleep(0.001)
        relay.finish(done)
    chunks = [e for e in post.events if e["type"] == "chunk"]
    assert "".join(e["text"] for e in chunks) == "".join(f"{i} " for i in range(100))
    assert [e["seq"] for e in post.events] == list(range(1, len(post.events) + 1))
    assert post.events[-1]["type"] == "done"
    assert len(chunks) < 50  # posts took 20 ms while deltas came every ~1 ms
    assert post.threads == {"relay"}  # the reader never posted itself


def test_gone_stops_posting_but_the_turn_still_finishes():
    post = Recorder(gone_after=1)
    outbox = Outbox("t", interval_s=0, max_frame_bytes=32 * 1024)
    with Relay(post, outbox) as relay:
        relay.text("a")
        time.sleep(0.02)
        relay.text("b")
        time.sleep(0.02)
        relay.text("c")
        relay.finish(done)
    assert relay.gone is True
    assert [e["text"] for e in post.events] == ["a"]
    assert outbox.closed and outbox.empty  # everything was numbered and dropped


def test_a_failing_post_does_not_kill_the_relay():
    post = Recorder(fail_after=0)
    with Relay(post, Outbox("t", interval_s=0, max_frame_bytes=32 * 1024)) as relay:
        relay.text("a")
        relay.finish(done)
    assert isinstance(relay.failed, RuntimeError)
    assert post.events == []


def test_leaving_the_block_without_finish_stops_the_thread():
    post = Recorder()
    try:
        with Relay(post, Outbox("t", interval_s=0, max_frame_bytes=32 * 1024)) as relay:
            relay.text("a")
            raise KeyError("reader failed")
    except KeyError:
        pass
    assert not any(t.name == "relay" and t.is_alive() for t in threading.enumerate())
