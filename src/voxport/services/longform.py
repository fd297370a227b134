"""Texts of any length, cut where speech pauses: sentence boundaries, then clauses, then words.

Nothing is dropped: every character of the text is in exactly one chunk, and a chunk too long for the limit is
cut at clause boundaries, then between words, and only a single over-long "word" is cut inside.
"""

from __future__ import annotations

import re

# The space (group 1) after a sentence's or a clause's end: its punctuation and any closing quotes or brackets
# stay with the words before it.
_SENTENCE_END = re.compile(r"[.!?…。！？][\"'”’)\]]*(\s+)")
_CLAUSE_END = re.compile(r"[,;:—–、，；：][\"'”’)\]]*(\s+)")


def split_text(text: str, max_chars: int) -> list[str]:
    """Chunks of at most `max_chars` characters that together hold every word of `text`, in order; sentences
    are kept whole where they fit, then clauses, then words."""
    chunks: list[str] = []
    for sentence in _split(text.strip(), _SENTENCE_END):
        pieces = _pieces(sentence, max_chars)
        if len(pieces) > 1:
            chunks.append(pieces.pop(0))  # a sentence cut in pieces starts a chunk: chunks end where sentences do
        for piece in pieces:
            if chunks and len(chunks[-1]) + 1 + len(piece) <= max_chars:
                chunks[-1] = f"{chunks[-1]} {piece}"
            else:
                chunks.append(piece)
    return chunks


def sentence_ends(text: str) -> list[tuple[int, int]]:
    """Where each sentence of `text` ends and the next may start: [start, end) of the space between them (after
    the closing punctuation). A text cut at one of these starts is the first whole sentences of the text, and
    `split_text` of it gives the text's first chunks (all but its last, which later sentences may join)."""
    return [match.span(1) for match in _SENTENCE_END.finditer(text)]


def _split(text: str, boundary: re.Pattern[str]) -> list[str]:
    """`text` cut at the spaces `boundary` finds (its group 1), the spaces dropped."""
    parts, start = [], 0
    for match in boundary.finditer(text):
        parts.append(text[start : match.start(1)])
        start = match.end(1)
    parts.append(text[start:])
    return [part for part in parts if part.strip()]


def _pieces(sentence: str, max_chars: int) -> list[str]:
    """A sentence whole if it fits, else its clauses, else the words of a clause too long (a single word longer
    than `max_chars` is cut into parts)."""
    if len(sentence) <= max_chars:
        return [sentence]
    pieces = []
    for clause in _split(sentence, _CLAUSE_END):
        if len(clause) <= max_chars:
            pieces.append(clause)
        else:
            pieces += [
                word[start : start + max_chars] for word in clause.split() for start in range(0, len(word), max_chars)
            ]
    return pieces
