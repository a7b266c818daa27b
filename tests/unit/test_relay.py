import threading
from typing import Optional

from chalicelib.gateway import ConnectionGone
from chalicelib.turns.outbox import Outbox
from chalicelib.turns.relay import PostRetries, Relay
from tests.support.timing import ManualClock, wait_until


class Recorder:
    """A post function that records; ``held`` makes each post wait for a permit (a slow post, on cue)."""

    def __init__(self, held: Optional[threading.Semaphore] = None, gone_after=None, fail_after=None):
        self.events = []
        self.held = held
        self.gone_after = gone_after
        self.fail_after = fail_after
        self.threads = set()
        self.to = []
        self.attempts = 0
        self.failures_left = -1  # with fail_after: how many posts fail (-1: all of them)

    def __call__(self, connection_id, event):
        self.threads.add(threading.current_thread().name)
        self.attempts += 1
        if self.gone_after is not None and len(self.events) >= self.gone_after and connection_id == "c1":
            raise ConnectionGone("c1")
        if self.fail_after is not None and len(self.events) >= self.fail_after and self.failures_left:
            self.failures_left -= 1
            raise RuntimeError("LimitExceededException")
        if self.held is not None:
            self.held.acquire()
        self.events.append(event)
        self.to.append(connection_id)


def done(seq):
    return {"type": "done", "turnId": "t", "seq": seq}


def test_slow_posts_make_fewer_larger_frames_in_order():
    permits = threading.Semaphore(0)
    post = Recorder(held=permits)
    with Relay(post, Outbox("t", interval_s=0.001, max_frame_bytes=32 * 1024), "c1") as relay:
        for index in range(100):
            relay.text(f"{index} ")
            if index % 10 == 9:
                permits.release()  # one post ends per ten deltas
        relay.close(done)
        permits.release(100)  # the rest go through
    chunks = [e for e in post.events if e["type"] == "chunk"]
    assert "".join(e["text"] for e in chunks) == "".join(f"{i} " for i in range(100))
    assert [e["seq"] for e in post.events] == list(range(1, len(post.events) + 1))
    assert post.events[-1]["type"] == "done"
    assert len(chunks) < 50  # at most one post ended per ten deltas
    assert post.threads == {"relay"}  # the reader never posted itself


def test_gone_stops_posting_but_the_turn_still_finishes():
    post = Recorder(gone_after=1)
    outbox = Outbox("t", interval_s=0, max_frame_bytes=32 * 1024)
    with Relay(post, outbox, "c1") as relay:
        relay.text("a")
        wait_until(lambda: post.events)  # "a" was posted
        relay.text("b")
        wait_until(lambda: relay.gone)  # posting "b" found the client gone
        relay.text("c")
        relay.close(done)
    assert relay.gone is True
    assert [e["text"] for e in post.events] == ["a"]
    assert outbox.closed and outbox.empty  # everything was numbered and dropped


FAST_RETRIES = PostRetries(attempts=4, base_s=0)


def test_a_failing_post_is_retried_in_order_and_nothing_is_lost():
    post = Recorder(fail_after=0)
    post.failures_left = 3  # the first three posts fail, then the connection recovers
    closed = []
    outbox = Outbox("t", interval_s=0, max_frame_bytes=32 * 1024)
    with Relay(post, outbox, "c1", close=closed.append, retries=FAST_RETRIES) as relay:
        relay.text("a")
        wait_until(lambda: post.attempts)
        relay.close(done)
    assert "".join(e.get("text", "") for e in post.events) == "a"
    assert [e["seq"] for e in post.events] == list(range(1, len(post.events) + 1))
    assert post.events[-1]["type"] == "done"
    assert closed == [] and relay.failed is None


def test_a_connection_that_keeps_refusing_posts_is_closed_so_its_client_resumes():
    post = Recorder(fail_after=0)
    closed = []
    outbox = Outbox("t", interval_s=0, max_frame_bytes=32 * 1024)
    with Relay(post, outbox, "c1", close=closed.append, retries=FAST_RETRIES) as relay:
        relay.text("a")
        wait_until(lambda: closed)
        relay.text("b")  # the reader goes on: the answer is still persisted for the resume
        relay.close(done)
    assert closed == ["c1"]
    assert isinstance(relay.failed, RuntimeError)
    assert post.events == []


def test_events_taken_for_a_connection_are_not_posted_after_a_resume_attached_another():
    permits = threading.Semaphore(0)
    post = Recorder(held=permits)
    outbox = Outbox("t", interval_s=0, max_frame_bytes=32 * 1024)
    with Relay(post, outbox, "c1") as relay:
        relay.text("zero ")
        wait_until(lambda: post.attempts == 1)  # "zero " (seq 1) is on its way, held
        relay.text("one ")
        relay.event(lambda seq: {"type": "trace", "turnId": "t", "seq": seq, "trace": {}})
        permits.release()
        wait_until(lambda: post.attempts == 2)  # the batch [chunk 2, trace 3] was taken; chunk 2 is held
        relay.attach("c1")  # the client resumed on the same connection meanwhile
        permits.release(100)
        relay.close(done)
    # Chunk 2 was already on the wire; the trace taken with it is stale and never follows it:
    # after the old stream, c1 gets the turn again from seq 1, numbered as before, then its end.
    assert [(e["type"], e["seq"]) for e in post.events] == [
        ("chunk", 1), ("chunk", 2), ("chunk", 1), ("chunk", 2), ("trace", 3), ("done", 4)
    ]
    assert [e.get("text") for e in post.events[2:4]] == ["zero ", "one "]


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
        wait_until(lambda: post.events)  # "one " was posted to c1
        relay.text("two ")  # c1 is gone by now: dropped
        wait_until(lambda: relay.gone)
        assert relay.gone
        relay.attach("c2")
        wait_until(lambda: "c2" in post.to)  # the answer so far was replayed on c2
        relay.text("three")
        relay.close(done)
    on_c2 = [e for e, to in zip(post.events, post.to) if to == "c2"]
    assert "".join(e["text"] for e in on_c2 if e["type"] == "chunk") == "one two three"
    assert [e["seq"] for e in on_c2] == list(range(1, len(on_c2) + 1))
    assert on_c2[-1]["type"] == "done"
    assert relay.gone is False


def test_abandon_posts_nothing_more():
    post = Recorder()
    clock = ManualClock()
    with Relay(post, Outbox("t", interval_s=10, max_frame_bytes=32 * 1024), "c1", clock=clock) as relay:
        relay.text("a")
        wait_until(lambda: post.events)  # "a" went out at once, "b" waits for the interval
        relay.text("b")
        relay.abandon()
        clock.advance(10)  # "b" is due now: the relay drains it without posting, and ends
    assert [e["text"] for e in post.events] == ["a"]
