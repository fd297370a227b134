"""Spoken text that remembers where it came from: each stretch of it points at the stretch of the original input
it says, so a span of what the model speaks maps back exactly to the words the user wrote."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Piece:
    """A stretch of spoken text [spoken_start, spoken_end) and the stretch of the source it says."""

    spoken_start: int
    spoken_end: int
    source_start: int
    source_end: int
    verbatim: bool  # copied unchanged: the i-th spoken character is the i-th source character


@dataclass(frozen=True)
class Spoken:
    """`text` to hand to the model; `pieces` cover it in order with no gap or overlap."""

    text: str
    pieces: tuple[Piece, ...]

    @classmethod
    def verbatim(cls, text: str, source_start: int = 0) -> Spoken:
        """`text` said as written, found at `source_start` in the source."""
        return cls(text, (Piece(0, len(text), source_start, source_start + len(text), True),) if text else ())

    def source_span(self, start: int, end: int) -> tuple[int, int]:
        """The smallest source span that the spoken span [start, end) says: copied characters map one to one,
        a replaced stretch (a number read out, an alias) maps to its whole source as soon as any of it is asked."""
        if not start < end:
            raise ValueError(f"empty or reversed spoken span {start}:{end}")
        begins, ends = [], []
        for piece in self.pieces:
            if piece.spoken_end <= start or piece.spoken_start >= end:
                continue
            if piece.verbatim:
                begins.append(piece.source_start + max(start, piece.spoken_start) - piece.spoken_start)
                ends.append(piece.source_start + min(end, piece.spoken_end) - piece.spoken_start)
            else:
                begins.append(piece.source_start)
                ends.append(piece.source_end)
        if not begins:
            raise ValueError(f"spoken span {start}:{end} is outside the text (length {len(self.text)})")
        return min(begins), max(ends)

    def slice(self, start: int, end: int) -> Spoken:
        """text[start:end] (a chunk of a long text) with its own pieces, still pointing into the same source."""
        builder = SpokenBuilder()
        for piece in self.pieces:
            low, high = max(start, piece.spoken_start), min(end, piece.spoken_end)
            if low >= high:
                continue
            if piece.verbatim:
                builder.copy(self.text[low:high], piece.source_start + low - piece.spoken_start)
            else:  # part of a replaced stretch still says all of its source
                builder.say(self.text[low:high], piece.source_start, piece.source_end)
        return builder.build()


def locate_chunks(text: str, chunks: Sequence[str]) -> list[tuple[int, int]]:
    """Where each chunk of `text` is, in order: chunks cut from it with runs of white space made single spaces
    (as longform's split_text does); ValueError if a chunk is not there."""
    spans, position = [], 0
    for chunk in chunks:
        pattern = r"\s+".join(re.escape(word) for word in chunk.split())
        match = re.compile(pattern).search(text, position)
        if not chunk.strip() or match is None:
            raise ValueError(f"chunk {chunk!r} is not in the text after offset {position}")
        spans.append(match.span())
        position = match.end()
    return spans


class SpokenBuilder:
    """Builds a `Spoken` left to right from copied and replaced stretches."""

    def __init__(self) -> None:
        self._text: list[str] = []
        self._pieces: list[Piece] = []
        self._length = 0

    def copy(self, text: str, source_start: int) -> None:
        """`text`, found at `source_start` in the source, said as written."""
        self._add(text, source_start, source_start + len(text), verbatim=True)

    def say(self, spoken: str, source_start: int, source_end: int) -> None:
        """`spoken` in place of the source stretch [source_start, source_end)."""
        self._add(spoken, source_start, source_end, verbatim=False)

    def add(self, spoken: Spoken) -> None:
        """Every piece of `spoken` (whose offsets are already the source's) after what is built so far."""
        for piece in spoken.pieces:
            self._add(
                spoken.text[piece.spoken_start : piece.spoken_end], piece.source_start, piece.source_end, piece.verbatim
            )

    def build(self) -> Spoken:
        return Spoken("".join(self._text), tuple(self._pieces))

    def _add(self, text: str, source_start: int, source_end: int, verbatim: bool) -> None:
        if not text:
            return
        last = self._pieces[-1] if self._pieces else None
        if verbatim and last is not None and last.verbatim and last.source_end == source_start:
            self._pieces[-1] = Piece(
                last.spoken_start, last.spoken_end + len(text), last.source_start, source_end, True
            )
        else:
            self._pieces.append(Piece(self._length, self._length + len(text), source_start, source_end, verbatim))
        self._text.append(text)
        self._length += len(text)


def compose(outer: Spoken, inner: Spoken) -> Spoken:
    """`outer` (whose source is `inner.text`) with its offsets carried through `inner` to `inner`'s source."""
    builder = SpokenBuilder()
    for piece in outer.pieces:
        text = outer.text[piece.spoken_start : piece.spoken_end]
        if not piece.verbatim:
            start, end = _inner_source(inner, piece.source_start, piece.source_end)
            builder.say(text, start, end)
            continue
        for part in inner.pieces:  # a copied stretch keeps the inner pieces' own one-to-one mapping, if they have it
            lo, hi = max(piece.source_start, part.spoken_start), min(piece.source_end, part.spoken_end)
            if lo >= hi:
                continue
            chunk = text[lo - piece.source_start : hi - piece.source_start]
            if part.verbatim:
                builder.copy(chunk, part.source_start + lo - part.spoken_start)
            else:
                builder.say(chunk, part.source_start, part.source_end)
    return builder.build()


def _inner_source(inner: Spoken, start: int, end: int) -> tuple[int, int]:
    if start < end:
        return inner.source_span(start, end)
    for piece in inner.pieces:  # an empty stretch (a space put between two tags) sits where its neighbour starts
        if piece.spoken_start >= start:
            return piece.source_start, piece.source_start
    return (inner.pieces[-1].source_end,) * 2 if inner.pieces else (0, 0)
