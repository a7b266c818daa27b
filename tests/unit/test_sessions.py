import re

from chalicelib import sessions

VALID = re.compile(r"^[0-9a-zA-Z._:-]{2,100}$")


def test_ids_fit_bedrocks_rule():
    for value in (
        sessions.session_id("alice", "conv", "c1"),
        sessions.session_id("alice", None, "c1"),
        sessions.memory_id("alice"),
        sessions.session_id("ünïcode user", "a" * 128, "c1"),
    ):
        assert VALID.match(value), value


def test_sessions_are_per_user_and_conversation():
    assert sessions.session_id("alice", "conv", "c1") == sessions.session_id("alice", "conv", "c2")
    assert sessions.session_id("alice", "conv", "c1") != sessions.session_id("bob", "conv", "c1")
    assert sessions.session_id("alice", "a", "c1") != sessions.session_id("alice", "b", "c1")
    # Without a conversation name each connection is its own conversation.
    assert sessions.session_id("alice", None, "c1") != sessions.session_id("alice", None, "c2")


def test_parts_cannot_be_shifted_to_collide():
    assert sessions.session_id("ab", "c", "x") != sessions.session_id("a", "bc", "x")


def test_memory_is_per_user():
    assert sessions.memory_id("alice") != sessions.memory_id("bob")
