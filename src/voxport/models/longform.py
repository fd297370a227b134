"""Long texts on any text-speaking model: split at sentence and clause boundaries, speak chunk by chunk with the
chunks already spoken as the voice's context (so the voice stays the same), hand out audio as it is made.

Nothing is dropped: every character of the text is in exactly one chunk, and a chunk too long for the limit is
cut at clause boundaries, then between words, and only a single over-long "word" is cut inside.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from voxport.models.base import SpeaksText, SpeechSpec, SpokenAudio, VoiceSample

MAX_CHUNK_CHARS = 200  # about 13 s of speech: well inside the models' training segments
CONTEXT_CHUNKS = 2  # chunks already spoken that the next one hears as its voice context
BASE_SECONDS, SECONDS_PER_CHAR = 2.0, 0.12  # a chunk's audio budget: generous (8 characters a second)

_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])[\"'”’)\]]*\s+")
_CLAUSE_END = re.compile(r"(?<=[,;:—–、，；：])\s+")


@dataclass
class LongPiece:
    """One piece of a long text's audio: which chunk it belongs to, and the audio."""

    chunk: int
    chunks: int
    text: str  # the chunk's words
    spoken: SpokenAudio


def split_text(text: str, max_chars: int = MAX_CHUNK_CHARS) -> list[str]:
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


def chunk_seconds(text: str, cap: float | None) -> float:
    """The most audio one chunk may take: enough for slow speech of its words, and at most `cap` if given."""
    budget = BASE_SECONDS + SECONDS_PER_CHAR * len(text)
    return budget if cap is None else min(budget, cap)


def speak_long(model: SpeaksText, spec: SpeechSpec, cap_seconds: float | None = None, stream: bool = True,
               max_chars: int = MAX_CHUNK_CHARS) -> Iterator[LongPiece]:
    """The speech of `spec.text` of any length, chunk by chunk: streamed pieces (`stream`), or each chunk whole.

    Each chunk after the first hears the voice sample (spec.context) and the last CONTEXT_CHUNKS chunks' audio.
    """
    chunks = split_text(spec.text, max_chars)
    spoken: list[VoiceSample] = []
    for index, text in enumerate(chunks):
        chunk_spec = replace(spec, text=text, context=spec.context + tuple(spoken[-CONTEXT_CHUNKS:]),
                             max_seconds=chunk_seconds(text, cap_seconds))
        audio = []
        for piece in model.speak_stream(chunk_spec) if stream else model.speak([chunk_spec]):
            audio.append(piece.audio)
            yield LongPiece(index, len(chunks), text, piece)
        if audio:
            spoken.append(VoiceSample(np.concatenate(audio), text))


def _split(text: str, boundary: re.Pattern) -> list[str]:
    return [part for part in boundary.split(text) if part.strip()]


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
            pieces += [word[start:start + max_chars] for word in clause.split()
                       for start in range(0, len(word), max_chars)]
    return pieces
