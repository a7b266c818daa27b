from chalicelib.store.history import bound, exchange


def conversation(*pairs):
    return [message for prompt, answer in pairs for message in exchange(prompt, answer)]


def test_bound_keeps_the_newest_whole_exchanges():
    history = conversation(("q1", "a1"), ("q2", "a2"), ("q3", "a3"))
    assert bound(history, max_turns=2, max_chars=1000) == conversation(("q2", "a2"), ("q3", "a3"))


def test_bound_by_characters_drops_oldest_first():
    history = conversation(("x" * 50, "y" * 50), ("q", "a"), ("r", "b"))
    assert bound(history, max_turns=10, max_chars=20) == conversation(("q", "a"), ("r", "b"))


def test_an_exchange_larger_than_the_bound_is_dropped_whole():
    assert bound(conversation(("x" * 100, "y")), max_turns=10, max_chars=50) == []


def test_history_always_starts_with_the_user():
    kept = bound(conversation(("q1", "a1"), ("q2", "a2")), max_turns=1, max_chars=100)
    assert kept[0]["role"] == "user" and [m["role"] for m in kept] == ["user", "assistant"]


def test_history_in_dynamodb_is_per_conversation_key_and_bounded(settings):
    import boto3

    from chalicelib.store.history import History

    history = History(boto3.client("dynamodb"), settings.history_table, ttl_s=60, max_turns=2, max_chars=10_000)
    for index in range(3):
        history.append("alice-key", f"q{index}", f"a{index}")
    history.append("bob-key", "secret", "answer")
    assert history.load("alice-key") == conversation(("q1", "a1"), ("q2", "a2"))
    assert history.load("bob-key") == conversation(("secret", "answer"))
    assert history.load("nobody") == []
