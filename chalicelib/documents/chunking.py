"""Plain text cut into chunks for a knowledge base: at most ``max_chars`` each, overlapping a little.

Each chunk is embedded and retrieved on its own, so it should hold whole thoughts: cuts fall at
the coarsest boundary that fits, between paragraphs, else between sentences, else between words;
a word is cut only when it alone is longer than a chunk (text without spaces, such as Chinese or
Japanese, is then cut after its last full stop in reach). Chunks are filled greedily, and each
after the first starts with the end of the one before it (up to ``overlap`` characters, from a
word's start), so a thought cut at a boundary is still found with its context.

The text is normalised first: a blank line between paragraphs, single spaces, lines kept (lists
and PDF lines stay readable). The same text always gives the same chunks, so a document
re-ingested after a failure overwrites its chunks one for one.
"""
from __future__ import annotations

import re
from typing import Iterator, List, Tuple

MAX_CHUNK_CHARS = 1_500
OVERLAP_CHARS = 150

Piece = Tuple[str, str]  # (the separator before it in the normalised text, the piece)


def chunk_text(text: str, max_chars: int = MAX_CHUNK_CHARS, overlap: int = OVERLAP_CHARS) -> List[str]:
    """The chunks of ``text``, in order; ``[]`` when it has nothing but whitespace."""
    if max_chars < 1 or not 0 <= overlap < max_chars:
        raise ValueError(f"need max_chars >= 1 and 0 <= overlap < max_chars, not {max_chars} and {overlap}")
    chunks: List[str] = []
    current = ""
    for separator, piece in _pieces(paragraphs(text), max_chars):
        if not current:
            current = piece
        elif len(current) + len(separator) + len(piece) <= max_chars:
            current += separator + piece
        else:
            chunks.append(current)
            tail = _tail(current, min(overlap, max_chars - len(separator) - len(piece)))
            current = tail + separator + piece if tail else piece
    if current:
        chunks.append(current)
    return chunks


def paragraphs(text: str) -> List[str]:
    """The text's paragraphs (split at blank lines), each line's whitespace collapsed to single
    spaces; the chunks' text is ``"\\n\\n".join`` of these, cut and overlapped."""
    found: List[str] = []
    lines: List[str] = []
    for line in text.splitlines():
        words = line.split()
        if words:
            lines.append(" ".join(words))
        elif lines:
            found.append("\n".join(lines))
            lines = []
    if lines:
        found.append("\n".join(lines))
    return found


def _pieces(paragraph_list: List[str], limit: int) -> Iterator[Piece]:
    """Pieces of at most ``limit`` characters, each as coarse as fits, with their separators."""
    for number, paragraph in enumerate(paragraph_list):
        for index, (separator, piece) in enumerate(_split(paragraph, limit)):
            yield ("\n\n" if number and not index else separator), piece


def _split(paragraph: str, limit: int) -> Iterator[Piece]:
    if len(paragraph) <= limit:
        yield "", paragraph
        return
    for separator, sentence in _sentences(paragraph):
        if len(sentence) <= limit:
            yield separator, sentence
            continue
        for index, (space, word) in enumerate(_words(sentence)):
            space = separator if index == 0 else space
            if len(word) <= limit:
                yield space, word
            else:
                for part_number, part in enumerate(_cut(word, limit)):
                    yield (space if part_number == 0 else ""), part


def _words(text: str) -> List[Piece]:
    """(the whitespace before it, the word) for each word; the first has no whitespace."""
    parts = re.split(r"(\s+)", text)
    return [("", parts[0])] + [(parts[i], parts[i + 1]) for i in range(1, len(parts) - 1, 2)]


# A word that ends a sentence: a full stop, question or exclamation mark, an ellipsis (or their
# full-width forms), maybe followed by closing quotes or brackets.
_SENTENCE_END = re.compile(r"[.!?\u2026\u3002\uff01\uff1f][\"'\u201d\u2019\u00bb)\]]*$")
_FULL_STOPS = ".!?\u2026\u3002\uff01\uff1f"


def _sentences(paragraph: str) -> Iterator[Piece]:
    separator = ""
    words: List[str] = []
    for space, word in _words(paragraph):
        if not words:
            separator = space
        words.append(word if not words else space + word)
        if _SENTENCE_END.search(word):
            yield separator, "".join(words)
            words = []
    if words:
        yield separator, "".join(words)


def _cut(word: str, limit: int) -> Iterator[str]:
    """A word longer than ``limit`` in parts of at most ``limit``: after the last full stop in the
    second half of each window when there is one, else at the limit."""
    start = 0
    while len(word) - start > limit:
        window = word[start:start + limit]
        stop = max(window.rfind(mark) for mark in _FULL_STOPS)
        end = start + (stop + 1 if stop >= limit // 2 else limit)
        yield word[start:end]
        start = end
    yield word[start:]


_WORD_START = re.compile(r"\s(?=\S)")


def _tail(chunk: str, budget: int) -> str:
    """The longest end of ``chunk`` of at most ``budget`` characters that starts at a word."""
    if budget <= 0:
        return ""
    if len(chunk) <= budget:
        return chunk
    start = _WORD_START.search(chunk, len(chunk) - budget - 1)
    return chunk[start.end():] if start else ""
