"""Chunking (chalicelib/documents/chunking.py): sizes, boundaries, overlap, normalisation."""
from __future__ import annotations

import itertools
import re
from typing import List

import pytest

from chalicelib.documents.chunking import MAX_CHUNK_CHARS, OVERLAP_CHARS, chunk_text, paragraphs


def sentence(n: int, words: int = 12) -> str:
    return " ".join(f"w{n}x{i}" for i in range(words)).capitalize() + "."


def normalised(text: str) -> str:
    return "\n\n".join(paragraphs(text))


def assert_well_formed(chunks: List[str], text: str, max_chars: int, overlap: int) -> None:
    """Every chunk fits, is a piece of the normalised text, and together they cover it in order,
    each overlapping the one before by at most ``overlap`` characters."""
    whole = normalised(text)
    position = 0
    covered = 0
    for chunk in chunks:
        assert 0 < len(chunk) <= max_chars
        assert chunk == chunk.strip()
        start = whole.find(chunk, position)
        assert start >= 0, f"not a piece of the text, in order: {chunk[:80]!r}"
        assert start <= covered + 2, "a gap between chunks"  # at most the separator between them
        assert covered - start <= overlap, "overlapping too much"
        position, covered = start + 1, start + len(chunk)
    assert covered == len(whole)


def test_defaults():
    assert (MAX_CHUNK_CHARS, OVERLAP_CHARS) == (1_500, 150)


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t \r\n", "\u2028\u00a0"])
def test_nothing_to_chunk(text):
    assert chunk_text(text) == []


def test_short_text_is_one_normalised_chunk():
    text = "  Title \t here \r\n\r\n\r\n\n  First   line\nsecond\u00a0line  \n\n\nLast.  "
    assert chunk_text(text) == ["Title here\n\nFirst line\nsecond line\n\nLast."]


def test_cuts_fall_between_paragraphs_when_they_fit():
    first, second = " ".join(sentence(n) for n in range(16)), " ".join(sentence(n) for n in range(16, 32))
    assert 900 < len(first) < 1300
    chunks = chunk_text(first + "\n\n" + second)
    assert chunks[0] == first
    assert chunks[1].endswith("\n\n" + second)
    tail = chunks[1][: -len("\n\n" + second)]
    assert 0 < len(tail) <= 150 and first.endswith(" " + tail)  # the overlap: the end of the first, from a word
    assert_well_formed(chunks, first + "\n\n" + second, 1500, 150)


def test_small_paragraphs_share_a_chunk():
    text = "\n\n".join(sentence(n, 3) for n in range(5))
    assert chunk_text(text) == [normalised(text)]


def test_a_long_paragraph_is_cut_between_sentences():
    text = " ".join(sentence(n) for n in range(40))
    chunks = chunk_text(text, max_chars=400, overlap=60)
    assert len(chunks) > 5
    assert all(chunk.endswith(".") for chunk in chunks), "every cut after a full stop"
    assert_well_formed(chunks, text, 400, 60)


def test_a_sentence_longer_than_a_chunk_is_cut_between_words():
    text = " ".join(f"word{i}" for i in range(300))  # no full stop at all
    chunks = chunk_text(text, max_chars=100, overlap=20)
    words = set(text.split())
    for chunk in chunks:
        assert set(chunk.split()) <= words, "a word was cut"
    assert_well_formed(chunks, text, 100, 20)


def test_only_a_word_longer_than_a_chunk_is_cut():
    word = "x" * 250
    chunks = chunk_text(f"short {word} end", max_chars=100, overlap=10)
    assert chunks == ["short", "x" * 100, "x" * 100, "x" * 50 + " end"]


def test_text_without_spaces_is_cut_after_its_full_stops():
    text = "これは文です。" * 40  # 280 characters, no spaces
    chunks = chunk_text(text, max_chars=100, overlap=10)
    assert all(chunk.endswith("。") for chunk in chunks)
    assert "".join(chunks) == text  # no word start to overlap from


def test_the_overlap_is_the_end_of_the_previous_chunk_from_a_word():
    text = " ".join(sentence(n) for n in range(30))
    chunks = chunk_text(text, max_chars=300, overlap=80)
    for before, after in itertools.pairwise(chunks):
        shared = next(n for n in range(min(len(before), len(after)), -1, -1) if before.endswith(after[:n]))
        assert 0 < shared <= 80
        assert before[-shared - 1] == " "  # it starts at a word
    assert_well_formed(chunks, text, 300, 80)


def test_without_overlap_chunks_partition_the_text():
    text = " ".join(sentence(n) for n in range(30))
    chunks = chunk_text(text, max_chars=300, overlap=0)
    assert " ".join(chunks) == text


@pytest.mark.parametrize("max_chars, overlap", [(1500, 150), (200, 50), (50, 0), (37, 36), (1, 0)])
def test_any_text_is_chunked_well(max_chars, overlap):
    text = "\n\n".join(  # every word once, so that where a chunk comes from is unambiguous
        " ".join(sentence(100 * p + n, words=n % 17 + 1) for n in range(p % 9 + 1)) + (f"\nLine {p}." if p % 4 == 0 else "")
        for p in range(60)
    ) + "\n\n" + "".join(str(i) for i in range(60))  # a word of 110 characters
    chunks = chunk_text(text, max_chars=max_chars, overlap=overlap)
    assert_well_formed(chunks, text, max_chars, overlap)


def test_deterministic():
    text = " ".join(sentence(n) for n in range(100))
    assert chunk_text(text) == chunk_text(text)
    assert re.fullmatch(r"W0x0 ", chunk_text(text)[0][:5])


@pytest.mark.parametrize("max_chars, overlap", [(0, 0), (100, 100), (100, -1), (10, 20)])
def test_impossible_sizes_are_refused(max_chars, overlap):
    with pytest.raises(ValueError):
        chunk_text("text", max_chars=max_chars, overlap=overlap)
