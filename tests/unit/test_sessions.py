import re

from chalicelib.turns import ids

VALID = re.compile(r"^[0-9a-zA-Z._:-]{2,100}$")


def test_ids_fit_bedrocks_rule():
    for value in (
        ids.session_id("alice", "conv", "c1"),
        ids.session_id("alice", None, "c1"),
        ids.memory_id("alice"),
        ids.session_id("ünïcode user", "a" * 128, "c1"),
    ):
        assert VALID.match(value), value


def test_sessions_are_per_user_and_conversation():
    assert ids.session_id("alice", "conv", "c1") == ids.session_id("alice", "conv", "c2")
    assert ids.session_id("alice", "conv", "c1") != ids.session_id("bob", "conv", "c1")
    assert ids.session_id("alice", "a", "c1") != ids.session_id("alice", "b", "c1")
    # Without a conversation name each connection is its own conversation.
    assert ids.session_id("alice", None, "c1") != ids.session_id("alice", None, "c2")


def test_parts_cannot_be_shifted_to_collide():
    assert ids.session_id("ab", "c", "x") != ids.session_id("a", "bc", "x")


def test_memory_is_per_user():
    assert ids.memory_id("alice") != ids.memory_id("bob")


def test_identities_holding_the_separator_never_collide():
    """A sub may hold NUL (or backslashes): no two (user, name) pairs may derive the same id."""
    pairs = [("a\0b", "c"), ("a", "b\0c"), ("a\\", "0b"), ("a", "\\0b"), ("a\\0", "b"), ("a", "0\0b")]
    assert len({ids.turn_id(user, request) for user, request in pairs}) == len(pairs)
    assert len({ids.session_id(user, name, "c1") for user, name in pairs}) == len(pairs)


def test_ids_of_ordinary_users_are_what_they_always_were():
    """Escaping changes nothing for parts without NUL or backslash: deployed sessions continue."""
    import hashlib

    assert ids.turn_id("alice", "r1") == hashlib.sha256(b"turn\0alice\0r1").hexdigest()[:32]
    assert ids.session_id("alice", "conv", "c1") == "s-" + hashlib.sha256(b"conversation\0alice\0conv").hexdigest()[:48]
