"""The Bedrock emulator's scenarios, without a server: prompt commands, pieces and pacing."""

import pytest

from devserver.bedrock.errors import ServiceError
from devserver.bedrock.scenarios import (
    BIG_CHUNK_CHARS, MAX_BIG_CHARS, Pacing, answer_pieces, base_answer, big_answer, check_throttle,
    parse_command, piece_delays, split_words, timed_pieces,
)

PACING = Pacing(first_token_delay=0.5, chunk_delay=0.1)


@pytest.mark.parametrize("prompt, expected", [
    ("hello", ("", None)),
    ("!slow 2.5 tell me", ("!slow", 2.5)),
    ("!big 3000", ("!big", 3000.0)),
    ("!throttle-once", ("!throttle-once", None)),
    ("say !slow 2", ("", None)),  # a command only counts at the start
])
def test_a_command_is_split_off_the_start_of_a_prompt(prompt, expected):
    assert parse_command(prompt) == expected


def test_pieces_are_about_a_word_and_join_back_exactly():
    text = "You said:  two  spaces\nand a line "
    assert "".join(split_words(text)) == text
    assert split_words("You said: hi") == ["You ", "said: ", "hi"]


def test_big_answers_have_the_exact_size_in_chunks_of_at_most_1000():
    text = base_answer("!big 2500", "!big", 2500)
    assert text == big_answer(2500) and len(text) == 2500 and text.startswith("You said: ")
    pieces = answer_pieces(text, "!big")
    assert [len(p) for p in pieces] == [BIG_CHUNK_CHARS, BIG_CHUNK_CHARS, 500]
    assert answer_pieces("", "!big") == [""]
    with pytest.raises(ServiceError) as refused:
        base_answer("!big", "!big", MAX_BIG_CHARS + 1)
    assert (refused.value.status, refused.value.code) == (400, "ValidationException")


def test_slow_spreads_the_chunks_over_its_seconds_after_the_first_token_delay():
    assert piece_delays(3, "", None, 0.5, 0.1) == [0.5, 0.1, 0.1]
    delays = piece_delays(4, "!slow", 2.0, 0.5, 0.1)
    assert delays == [1.0, 0.5, 0.5, 0.5] and sum(delays) == pytest.approx(2.5)


def test_a_stream_error_keeps_only_the_first_piece():
    assert timed_pieces("You said: !stream-error", "!stream-error", None, PACING) == [(0.5, "You ")]
    assert timed_pieces("You said: hi", "", None, PACING) == [(0.5, "You "), (0.1, "said: "), (0.1, "hi")]


def test_throttle_refuses_always_and_throttle_once_only_the_first_time():
    seen: list[str] = []

    def first_time() -> bool:
        seen.append("asked")
        return len(seen) == 1

    check_throttle("", first_time)
    check_throttle("!slow", first_time)
    assert seen == []  # only !throttle-once asks (asking records the key)
    with pytest.raises(ServiceError) as refused:
        check_throttle("!throttle", first_time)
    assert (refused.value.status, refused.value.code) == (429, "ThrottlingException")
    with pytest.raises(ServiceError):
        check_throttle("!throttle-once", first_time)
    check_throttle("!throttle-once", first_time)
    assert seen == ["asked", "asked"]
