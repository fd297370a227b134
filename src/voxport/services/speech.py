"""Speech from text, the one implementation every door calls: `voxport tts` (one text, a file, a batch file,
a stream), `voxport batch tts` on Ray, POST /v1/audio/speech and Python.

A request leaves any choice open (None) that the family's `SpeechDefaults` then makes. A text of any length is
spoken whole, chunk by chunk, each chunk hearing the voice sample and the chunks before it; each chunk's length
budget, the seed, and batching (requests of different lengths share one batch, each row with its own limits)
are decided here and nowhere else, so the same request gives the same audio through every door.

The text goes through the text layer first (`voxport.text`): SSML or plain text, numbers and dates read out, each
piece of speech cut into chunks that keep their offsets into the input, and breaks spoken as exact silence. So
every door gets the same pauses, the same spoken words, and chunk and word timings in the input's own words.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from voxport.audio.io import check_samples, load_audio
from voxport.audio.join import Joined, StreamJoin, join_audio
from voxport.errors import InputError
from voxport.models.base import SpeaksText, SpeechSpec, SpokenAudio, TimedAudio, VoiceSample
from voxport.models.registry import load_model
from voxport.models.sampling import SamplingSettings
from voxport.runtime.seeding import check_seed, fresh_seed
from voxport.services.longform import sentence_ends, split_text
from voxport.text.align import ALIGNER_MODEL, Aligner, ChunkTime, WordTime, chunk_times, word_times
from voxport.text.plan import plan_text
from voxport.text.script import hint
from voxport.text.segments import Break, Segment, Speech, TextPlan
from voxport.text.spoken import Spoken, SpokenBuilder, locate_chunks

_WHOLE_WORD = re.compile(r"\S+(?=\s)")


@dataclass(frozen=True)
class SpeechRequest:
    """What to say and how, as any door asks it; None is the family's default."""

    text: str
    speaker: int | None = None  # a speaker id of the model's own
    voice: tuple[VoiceSample, ...] = ()  # earlier speech to continue, oldest first (see `SpeechService.sample`)
    seed: int | None = None  # None: a fresh seed, reported in the result
    temperature: float | None = None  # 0: greedy, as OpenAI's API reads it
    top_k: int | None = None  # 0: no top-k filter
    greedy: bool = False
    max_steps: int | None = None  # the most steps (frames) each chunk of text may take; None: its budget
    max_seconds: float | None = None  # the same cap in seconds of audio (the smaller counts if both are given)
    min_steps: int = 0  # steps each chunk makes before its end may come
    reference_engine: bool = False  # the upstream library's own generation, for comparison (one chunk, no batch)
    normalize: bool = True  # numbers, dates, money, ... read out before the model sees the text
    ssml: bool | None = None  # None: SSML when the text starts with <speak>; False: plain text ("<" is a character)
    timestamps: bool = False  # time each word of the text in the speech (a forced aligner; chunks are always timed)


@dataclass(frozen=True)
class SpeechPlan:
    """A request with every choice made and checked: what will be spoken, chunk by chunk."""

    request: SpeechRequest
    chunks: tuple[str, ...]  # what the model reads, chunk by chunk
    speaker: int
    sampling: SamplingSettings
    seed: int
    max_steps: tuple[int, ...]  # each chunk's limit
    script: TextPlan  # the chunks (with offsets into the input) and the breaks between them, in order

    @property
    def batch_key(self) -> tuple[Any, ...]:
        """Plans equal in this key can be spoken in one batch (seeds and lengths are each row's own)."""
        return (self.sampling, self.request.reference_engine)


@dataclass
class SpeechPiece:
    """Audio of one chunk of a text, whole or one streamed part of it."""

    chunk: int
    chunks: int
    text: str  # the chunk's words ("" for a break's silence)
    spoken: SpokenAudio
    segment: int = 0  # the part of the plan's script this audio belongs to (a chunk or a break)


@dataclass
class SpeechResult(TimedAudio):
    """The whole speech of one request."""

    audio: np.ndarray  # float32 mono
    sample_rate: int
    steps: int  # generation steps (frames) made, all chunks together
    seed: int
    chunks: int
    codes: np.ndarray | None  # every chunk's ids, in order, where the family has them
    timings: dict[str, float] = field(default_factory=dict)  # seconds of each phase, all chunks together
    chunk_times: list[ChunkTime] = field(default_factory=list)  # when each chunk is heard (exact)
    words: list[WordTime] | None = None  # with `timestamps`: when each word of the input is heard

    @property
    def rtf(self) -> float | None:
        """Real-time factor: compute seconds per second of audio (lower is better)."""
        return self.compute_seconds / self.audio_seconds if self.audio_seconds else None


class SpeechService:
    """Speech from one loaded text-speaking model."""

    @classmethod
    def load(
        cls, source: str | Path, device: torch.device, dtype: torch.dtype, aligner: str | Path | None = None
    ) -> SpeechService:
        """The service of the model at `source`, refused before loading unless it speaks text."""
        return cls(cast(SpeaksText, load_model(source, device, dtype, capability="speaks_text")), aligner)

    def __init__(self, model: SpeaksText, aligner: str | Path | None = None):
        """`aligner`: the forced aligner that times words (a hub id or a local directory; None: ALIGNER_MODEL),
        loaded at the first request that asks for word timings."""
        if not getattr(model, "speaks_text", False):
            raise InputError(f"{type(model).__name__} does not speak text")
        self.model = model
        self.defaults = model.speech_defaults
        self.aligner_source = ALIGNER_MODEL if aligner is None else aligner
        self._aligner: Aligner | None = None
        self._aligner_lock = threading.Lock()

    @property
    def sample_rate(self) -> int:
        return self.model.sample_rate

    def sample(self, audio: np.ndarray | str | Path, text: str, speaker: int | None = None) -> VoiceSample:
        """A voice sample at the model's rate from samples at that rate or any audio file (the audio policy
        checks it either way)."""
        if isinstance(audio, np.ndarray):
            samples = check_samples(audio, self.sample_rate, "voice sample")
        else:
            samples = load_audio(audio, self.sample_rate)
        if not text.strip():
            raise InputError("a voice sample's words are empty: expected the words spoken in it")
        return VoiceSample(samples, text, speaker)

    def plan(self, request: SpeechRequest) -> SpeechPlan:
        """Every choice made and every check passed, before any work: a plan that passes is spoken whole."""
        if not request.text.strip():
            raise InputError("text is empty: expected words to speak")
        speaker = self.defaults.speaker if request.speaker is None else request.speaker
        for who in (speaker, *(sample.speaker for sample in request.voice if sample.speaker is not None)):
            if who < 0:
                raise InputError(f"speaker id is {who}: expected a non-negative integer")
        check_seed(request.seed)
        script = self._script(request)
        chunks = tuple(speech.text for speech in script.speech)
        if not chunks:
            raise InputError("the text has no words to speak (only breaks): expected words to speak")
        if request.reference_engine and len(chunks) > 1:
            raise InputError(
                f"the reference engine speaks one chunk of text (up to {self.defaults.max_chunk_chars} "
                "characters): use the default engine for longer texts"
            )
        limits = tuple(self._steps(chunk, request) for chunk in chunks)
        if request.min_steps < 0 or request.min_steps > min(limits):
            raise InputError(f"min steps is {request.min_steps}: expected 0..the chunk's max steps ({min(limits)})")
        seed = fresh_seed() if request.seed is None else request.seed
        return SpeechPlan(request, chunks, speaker, self._sampling(request), seed, limits, script)

    def speak(self, request: SpeechRequest, on_step: Callable[[int], None] | None = None) -> SpeechResult:
        return self.speak_plans([self.plan(request)], on_step)[0]

    def speak_batch(
        self, requests: list[SpeechRequest], on_step: Callable[[int], None] | None = None
    ) -> list[SpeechResult]:
        return self.speak_plans([self.plan(request) for request in requests], on_step)

    def speak_plans(self, plans: list[SpeechPlan], on_step: Callable[[int], None] | None = None) -> list[SpeechResult]:
        """Every plan spoken whole, batched: plans that share a `batch_key` run together, chunk k of each in
        one batch (each row with its own seed and limits, so a plan gives the same audio alone or batched).
        `on_step(n)` hears the steps done so far, all batches together (it may raise to stop)."""
        spoken: list[list[SpokenAudio]] = [[] for _ in plans]
        done = 0
        groups: dict[tuple[Any, ...], list[int]] = {}
        for index, plan in enumerate(plans):
            groups.setdefault(plan.batch_key, []).append(index)
        for members in groups.values():
            for chunk in range(max(len(plans[index].chunks) for index in members)):
                rows = [index for index in members if chunk < len(plans[index].chunks)]
                specs = [self._spec(plans[index], chunk, _heard(plans[index], spoken[index])) for index in rows]

                def heard(steps: int, before: int = done) -> None:
                    if on_step is not None:
                        on_step(before + steps)

                made = self._speak_chunk(specs, plans[rows[0]].request.reference_engine, heard)
                for index, audio in zip(rows, made):
                    spoken[index].append(audio)
                done += max(audio.output_tokens for audio in made)
        return [self._result(plan, pieces) for plan, pieces in zip(plans, spoken)]

    def pieces(self, plan: SpeechPlan, streamed: bool = True) -> Iterator[SpeechPiece]:
        """The speech of one plan as it is made: each chunk whole (`streamed` False) or in the parts the model
        streams, and each break's silence. Joined end to end, the pieces are the plan's speech, sample for sample
        (`times` then says when each chunk and word is heard in them)."""
        spoken: list[SpokenAudio] = []
        joiner = StreamJoin(self.sample_rate, len(plan.script.segments))
        count = len(plan.chunks)
        for index, segment in enumerate(plan.script.segments):
            chunk = len(spoken)
            if isinstance(segment, Break):
                silence = SpokenAudio(joiner.silence(segment.seconds), self.sample_rate, 0)
                yield SpeechPiece(min(chunk, count - 1), count, "", silence, index)
                continue
            spec = self._spec(plan, chunk, _heard(plan, spoken))
            parts = self.model.speak_stream(spec) if streamed else iter(self._speak_chunk([spec], False, None))
            made = []
            for part in parts:
                made.append(part)
                audio = joiner.speech(part.audio)
                if not streamed:  # the chunk is whole: its end goes out with it
                    audio = np.concatenate([audio, joiner.end()])
                yield SpeechPiece(chunk, count, segment.text, replace(part, audio=audio), index)
            if streamed:
                tail = SpokenAudio(joiner.end(), self.sample_rate, 0)
                yield SpeechPiece(chunk, count, segment.text, tail, index)
            spoken.append(_joined(made, self.sample_rate))

    def times(self, plan: SpeechPlan, pieces: list[SpeechPiece]) -> tuple[list[ChunkTime], list[WordTime] | None]:
        """When each chunk (and, if the plan's request asks, each word) is heard in the pieces of `plan`."""
        lengths = [0] * len(plan.script.segments)
        for piece in pieces:
            lengths[piece.segment] += len(piece.spoken.audio)
        audio = np.concatenate([piece.spoken.audio for piece in pieces]) if pieces else np.zeros(0, np.float32)
        ends = np.cumsum(lengths).tolist()
        spans = tuple((end - length, end) for end, length in zip(ends, lengths, strict=True))
        return self._times(plan, Joined(audio, spans, self.sample_rate))

    def aligner(self) -> Aligner:
        """The forced aligner, loaded once, at first use."""
        with self._aligner_lock:
            if self._aligner is None:
                self._aligner = Aligner.load(self.aligner_source, getattr(self.model, "device", None))
            return self._aligner

    def _script(self, request: SpeechRequest) -> TextPlan:
        """The request's text as what to speak: each piece of speech cut into chunks the model can take (each
        keeping its offsets into the input), with the breaks between them."""
        text = plan_text(request.text, ssml=request.ssml, normalize=request.normalize)
        segments: list[Segment] = []
        for segment in text.segments:
            if isinstance(segment, Break):
                segments.append(segment)
                continue
            chunks = split_text(segment.text, self.defaults.max_chunk_chars)
            for chunk, (start, end) in zip(chunks, locate_chunks(segment.text, chunks), strict=True):
                segments.append(Speech(_spaced_as(segment.spoken.slice(start, end), chunk)))
        return TextPlan(text.source, tuple(segments))

    def _speak_chunk(
        self, specs: list[SpeechSpec], reference: bool, on_step: Callable[[int], None] | None
    ) -> list[SpokenAudio]:
        if not reference:
            return self.model.speak(specs, on_step)
        speak_reference = getattr(self.model, "speak_reference", None)
        if speak_reference is None:
            raise InputError(f"{type(self.model).__name__} has no reference engine to compare with")
        return [speak_reference(spec) for spec in specs]

    def _spec(self, plan: SpeechPlan, chunk: int, heard: Sequence[VoiceSample]) -> SpeechSpec:
        """Chunk `chunk` of `plan`, hearing the voice sample and the last chunks spoken before it (`heard`: every
        chunk spoken before it, in order)."""
        heard = tuple(heard)
        context = (
            plan.request.voice + heard[len(heard) - self.defaults.context_chunks :] if heard else plan.request.voice
        )
        return SpeechSpec(
            text=plan.chunks[chunk],
            speaker=plan.speaker,
            context=context,
            max_steps=plan.max_steps[chunk],
            min_steps=plan.request.min_steps,
            sampling=plan.sampling,
            seed=plan.seed,
        )

    def _steps(self, chunk: str, request: SpeechRequest) -> int:
        """A chunk's step limit: the request's cap where it gives one, else the family's budget for its text."""
        caps = []
        if request.max_steps is not None:
            if request.max_steps < 1:
                raise InputError(f"max steps is {request.max_steps}: expected a positive number")
            caps.append(request.max_steps)
        if request.max_seconds is not None:
            if not 0 < request.max_seconds < math.inf:
                raise InputError(f"max seconds is {request.max_seconds}: expected a positive finite number")
            caps.append(self._seconds_to_steps(request.max_seconds))
        if caps:
            return min(caps)
        return max(self._seconds_to_steps(self.defaults.budget_seconds(chunk)), request.min_steps)

    def _seconds_to_steps(self, seconds: float) -> int:
        return max(1, math.ceil(seconds * self.model.step_rate - 1e-9))

    def _sampling(self, request: SpeechRequest) -> SamplingSettings:
        """The family's sampling with the request's choices; greedy rows share one key whatever they asked for
        the (then unused) temperature and top-k."""
        defaults = self.defaults.sampling
        if request.temperature is not None and not 0 <= request.temperature < math.inf:  # NaN fails this too
            raise InputError(f"temperature is {request.temperature}: expected 0 (greedy) or a positive finite number")
        if request.top_k is not None and request.top_k < 0:
            raise InputError(f"top-k is {request.top_k}: expected 0 (off) or a positive number")
        if request.greedy or request.temperature == 0:
            return replace(defaults, greedy=True)
        return replace(
            defaults,
            temperature=request.temperature or defaults.temperature,
            top_k=defaults.top_k if request.top_k is None else request.top_k,
            greedy=False,
        )

    def _result(self, plan: SpeechPlan, pieces: list[SpokenAudio]) -> SpeechResult:
        whole = _joined(pieces, self.sample_rate)
        made = iter(pieces)
        parts = [
            segment.seconds if isinstance(segment, Break) else next(made).audio for segment in plan.script.segments
        ]
        joined = join_audio(parts, self.sample_rate)
        chunks, words = self._times(plan, joined)
        return SpeechResult(
            joined.audio,
            self.sample_rate,
            whole.output_tokens,
            plan.seed,
            len(plan.chunks),
            whole.codes,
            whole.timings,
            chunks,
            words,
        )

    def _times(self, plan: SpeechPlan, joined: Joined) -> tuple[list[ChunkTime], list[WordTime] | None]:
        words = word_times(self.aligner(), plan.script, joined) if plan.request.timestamps else None
        return chunk_times(plan.script, joined), words


@dataclass(frozen=True)
class InputChunk:
    """A chunk of streamed text ready to speak: chunk `chunk` of `plan`, the plan of the text since the last flush."""

    plan: SpeechPlan
    chunk: int
    follows: bool | None  # True: more chunks follow it; False: the input ended with it; None: not known yet


class SpeechInput:
    """Speech of a text that comes in pieces (an LLM's words as they are made), planned and spoken by the service
    as a whole text is. A chunk goes out as soon as no later text can change it: the sentences after it have
    started the next chunk (by `split_text`'s own rule, applied to the whole sentences so far) and a whole word
    with a letter follows them (normalization looks no further ahead than that). So the audio is the whole text's
    in one request with the same seed, sample for sample, unless `flush` ends a stretch early: then the text so
    far is spoken as if it ended there, and the voice goes on from it.

    `add`, `flush` and `end` only read text (cheap); `pieces` speaks what they handed out, in that order, on the
    model's worker."""

    def __init__(self, service: SpeechService, request: SpeechRequest) -> None:
        """`request`: every setting of the speech but its text (SSML, timings and the reference engine are
        refused: streamed text is plain text, spoken by the default engine)."""
        if request.ssml:
            raise InputError("streamed text is read as plain text: SSML is not parsed here")
        if request.reference_engine or request.timestamps:
            raise InputError("streamed text is spoken by the default engine, without word timings")
        seed = fresh_seed() if request.seed is None else request.seed
        self.service = service
        self.request = replace(request, text="", ssml=False, seed=seed)
        service.plan(replace(self.request, text="Ready."))  # every setting checked before any text comes
        self.text = ""  # the text since the last flush
        self.chars = 0  # characters taken in, all together
        self._released: list[str] = []  # the chunks of `text` handed out
        self._joiner = StreamJoin(service.sample_rate, None)
        self._heard: list[VoiceSample] = []  # every chunk spoken, as voice context for the next
        self._held = False  # the last chunk spoken still holds its fade: what follows it was not known

    @property
    def seed(self) -> int:
        return cast(int, self.request.seed)

    def add(self, text: str) -> list[InputChunk]:
        """More text: the chunks it makes sure (often none)."""
        self.text += text
        self.chars += len(text)
        if not any(char.isspace() for char in text):
            return []  # a chunk is sure only once a whole word follows it
        return self._release(self._sure(), True)

    def flush(self, end: bool = False) -> list[InputChunk]:
        """Every chunk of the text so far, spoken as if the text ended here; `end`: no text comes after it."""
        chunks = self._release(None, False if end else None) if self.text.strip() else []
        self.text, self._released = "", []
        return chunks

    def pieces(self, chunks: list[InputChunk], ended: bool = False) -> Iterator[SpeechPiece]:
        """The speech of `chunks` as it is made, joined to what was spoken before them as `pieces` joins a whole
        text's chunks; `ended`: the input has ended (the last fade is let go). `chunk` counts every chunk of the
        input, `chunks` those handed out so far."""
        rate = self.service.sample_rate
        for item in chunks:
            count, text = len(self._heard), item.plan.chunks[item.chunk]
            if self._held:
                yield SpeechPiece(count - 1, count, self._heard[-1].text, SpokenAudio(self._joiner.end(), rate, 0))
            made = []
            for part in self.service.model.speak_stream(self.service._spec(item.plan, item.chunk, self._heard)):
                made.append(part)
                yield SpeechPiece(count, count + 1, text, replace(part, audio=self._joiner.speech(part.audio)))
            self._heard.append(VoiceSample(_joined(made, rate).audio, text))
            self._held = item.follows is None
            if not self._held:
                yield SpeechPiece(count, count + 1, text, SpokenAudio(self._joiner.end(item.follows is False), rate, 0))
        if ended and self._held:
            count = len(self._heard)
            yield SpeechPiece(count - 1, count, self._heard[-1].text, SpokenAudio(self._joiner.end(True), rate, 0))
            self._held = False

    def _sure(self) -> int:
        """How many chunks of `text` no later text can change: all but the last chunk of its whole sentences, cut
        at the last sentence end that a whole word with a letter follows."""
        speech = plan_text(self.text, ssml=False, normalize=self.request.normalize).speech
        if not speech:
            return 0
        spoken = speech[0].spoken
        for start, end in reversed(sentence_ends(spoken.text)):
            if end < len(spoken.text) and _word_follows(self.text, spoken.source_span(start, end)[1]):
                return len(split_text(spoken.text[:start], self.service.defaults.max_chunk_chars)) - 1
        return 0

    def _release(self, count: int | None, last_follows: bool | None) -> list[InputChunk]:
        """Chunks of `text` up to `count` (None: all of them) not handed out yet; the last of them is followed by
        more chunks if `count` leaves some, else as `last_follows` says."""
        if count is not None and count <= len(self._released):
            return []
        plan = self.service.plan(replace(self.request, text=self.text))
        count = len(plan.chunks) if count is None else count
        if plan.chunks[: len(self._released)] != tuple(self._released):  # the rule above failed: never expected
            raise RuntimeError(f"streamed text was chunked {self._released}, then {plan.chunks}")
        first = len(self._released)
        self._released = list(plan.chunks[:count])
        follows = [True] * (count - first - 1) + [True if count < len(plan.chunks) else last_follows]
        return [InputChunk(plan, index, follow) for index, follow in zip(range(first, count), follows)]


def timestamps_record(plan: SpeechPlan, chunks: list[ChunkTime], words: list[WordTime] | None) -> dict[str, Any]:
    """Timings as every door hands them out (JSON): the input as given, each chunk (the text the model read, the
    stretch of the input it says, its start and end in seconds) and, where asked, each word of the input."""
    record: dict[str, Any] = {"text": plan.script.source, "chunks": [asdict(chunk) for chunk in chunks]}
    if words is not None:
        record["words"] = [asdict(word) for word in words]
    return record


def _spaced_as(spoken: Spoken, chunk: str) -> Spoken:
    """`spoken` with the white space between its words as `chunk` has it (the chunker makes some runs single
    spaces); each space still points at the white space it stands for."""
    if spoken.text == chunk:
        return spoken
    builder = SpokenBuilder()
    words = [match.span() for match in re.finditer(r"\S+", spoken.text)]
    gaps = re.findall(r"\s+", chunk)
    for index, (start, end) in enumerate(words):
        if index:
            builder.say(gaps[index - 1], *spoken.source_span(words[index - 1][1], start))
        builder.add(spoken.slice(start, end))
    return builder.build()


def _word_follows(text: str, position: int) -> bool:
    """Whether text[position:] holds a whole word (space after it) with a letter of a script that decides how
    numbers are read (script.hint): nothing written after it changes how the text before `position` is read."""
    return any(any(hint(char) for char in word.group()) for word in _WHOLE_WORD.finditer(text, position))


def _heard(plan: SpeechPlan, spoken: list[SpokenAudio]) -> list[VoiceSample]:
    """The chunks of `plan` spoken so far, as voice context: each chunk's audio with its words."""
    return [VoiceSample(audio.audio, plan.chunks[index]) for index, audio in enumerate(spoken)]


def _joined(pieces: list[SpokenAudio], sample_rate: int) -> SpokenAudio:
    """Pieces of speech as one: audio and ids end to end, steps and timings added up."""
    codes = [piece.codes for piece in pieces if piece.codes is not None]
    timings: dict[str, float] = {}
    for piece in pieces:
        for name, seconds in (piece.timings or {"compute_seconds": piece.compute_seconds}).items():
            timings[name] = timings.get(name, 0.0) + seconds
    audio = np.concatenate([piece.audio for piece in pieces]) if pieces else np.zeros(0, np.float32)
    return SpokenAudio(
        audio,
        sample_rate,
        sum(piece.output_tokens for piece in pieces),
        sum(piece.compute_seconds for piece in pieces),
        np.concatenate(codes) if len(codes) == len(pieces) and codes else None,
        timings,
    )
