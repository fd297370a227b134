"""What to speak, in order: speech (text for the model, with offsets into the user's input) and breaks (exact
silence). Plain text and SSML both come to this."""

from __future__ import annotations

from dataclasses import dataclass

from voxport.text.spoken import Spoken


@dataclass(frozen=True)
class Speech:
    """Text for the model to speak; `spoken.source_span` leads any part of it back to the input."""

    spoken: Spoken

    @property
    def text(self) -> str:
        return self.spoken.text


@dataclass(frozen=True)
class Break:
    """Silence of exactly `seconds` (already capped)."""

    seconds: float


Segment = Speech | Break


@dataclass(frozen=True)
class TextPlan:
    """The plan for one input: `source` is the input as given (SSML markup included), which every offset is into."""

    source: str
    segments: tuple[Segment, ...]

    @property
    def speech(self) -> tuple[Speech, ...]:
        return tuple(segment for segment in self.segments if isinstance(segment, Speech))
