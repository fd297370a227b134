"""Voices for /v1/audio/speech: OpenAI's built-in names, voices named on the command line, and custom voices
made OpenAI's way (a consent recording, then a voice sample with its transcript), kept in a directory so they
outlive a restart.

On disk (`--voices-dir`): consents/<id>.json with the recording beside it as <id>.audio (the bytes uploaded),
voices/<id>.json with the sample as <id>.wav (mono float32 at the rate uploaded). The JSON is written last, so
a file set without its JSON is an interrupted upload and is ignored.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from voxport.audio.io import load_audio
from voxport.errors import InputError
from voxport.models.base import VoiceSample
from voxport.runtime.files import replaced_atomically
from voxport.serve.audio_formats import read_audio_bytes
from voxport.serve.errors import APIError

# OpenAI's built-in voice names and the CSM speaker id each one speaks as. CSM-1B has no fixed voices: a
# speaker id without a voice sample gives a voice chosen by the seed, so these names let stock clients work;
# a custom voice (or --voice) keeps one voice across requests.
OPENAI_VOICES = {name: speaker for speaker, name in enumerate(
    ["alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse", "marin", "cedar"])}
MAX_UPLOAD_BYTES = 10 * 2**20  # OpenAI's limit for consent recordings and voice samples
SAMPLE_SECONDS = (0.3, 30.0)  # a voice sample shorter says too little; a longer one crowds the model's context


def default_voices_dir() -> Path:
    """$XDG_DATA_HOME/voxport/voices, or ~/.local/share/voxport/voices."""
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "voxport" / "voices"


@dataclass(frozen=True)
class Consent:
    id: str
    name: str
    language: str
    created_at: int

    def to_api(self) -> dict:
        return {**asdict(self), "object": "audio.voice_consent"}


@dataclass(frozen=True)
class CustomVoice:
    id: str
    name: str
    consent: str
    transcript: str
    created_at: int

    def to_api(self) -> dict:
        return {"id": self.id, "name": self.name, "object": "audio.voice", "type": "audio_sample",
                "created_at": self.created_at, "consent": self.consent, "transcript": self.transcript}


@dataclass(frozen=True)
class ResolvedVoice:
    """What a speech request's voice comes to: a speaker id and, for recorded voices, the sample to continue."""

    speaker: int | None  # None: the model's default speaker
    context: tuple[VoiceSample, ...] = ()


class VoiceBook:
    """Every voice a server knows; custom ones live in `directory` (None: this server keeps none)."""

    def __init__(self, directory: Path | None = None, named: dict[str, tuple[str, str]] | None = None):
        self.directory = directory
        self.named = dict(named or {})  # name -> (audio file, its words), from --voice
        self._lock = threading.Lock()
        self._samples: dict[tuple[str, int], VoiceSample] = {}
        self.consents: dict[str, Consent] = {}
        self.voices: dict[str, CustomVoice] = {}
        if directory is not None:
            for kind in ("consents", "voices"):
                (directory / kind).mkdir(parents=True, exist_ok=True)
            self.consents = {item.id: item for item in self._read_all("consents", Consent)}
            self.voices = {item.id: item for item in self._read_all("voices", CustomVoice)}

    # --- speech requests ---------------------------------------------------------------------------------

    def resolve(self, voice: str | dict, sample_rate: int) -> ResolvedVoice:
        """A request's `voice`: a built-in name, a speaker id, a --voice name, or {"id": custom voice id}."""
        key = voice.get("id") if isinstance(voice, dict) else voice
        if isinstance(voice, dict) and key in self.voices:
            return ResolvedVoice(None, (self._sample(key, sample_rate),))
        if isinstance(voice, str):
            if voice in OPENAI_VOICES:
                return ResolvedVoice(OPENAI_VOICES[voice])
            if voice.isdigit():
                return ResolvedVoice(int(voice))
            if voice in self.named:
                return ResolvedVoice(None, (self._sample(voice, sample_rate),))
        raise APIError(400, f"unknown voice {key!r}: expected one of {', '.join(self.names())}, a speaker id, "
                            f"or {{\"id\": ...}} of a custom voice"
                            + (f" ({', '.join(sorted(self.voices))})" if self.voices else ""),
                       "voice", code="voice_not_found")

    def names(self) -> list[str]:
        return [*OPENAI_VOICES, *sorted(self.named)]

    def listing(self) -> list[dict]:
        """GET /v1/audio/voices: built-in, named and custom voices."""
        built_in = [{"id": name, "name": name, "object": "audio.voice", "type": "builtin", "speaker": speaker}
                    for name, speaker in OPENAI_VOICES.items()]
        named = [{"id": name, "name": name, "object": "audio.voice", "type": "named", "transcript": words}
                 for name, (_, words) in sorted(self.named.items())]
        custom = [voice.to_api() for voice in sorted(self.voices.values(), key=lambda voice: voice.created_at)]
        return built_in + named + custom

    def _sample(self, key: str, sample_rate: int) -> VoiceSample:
        with self._lock:
            cached = self._samples.get((key, sample_rate))
            if cached is None:
                if key in self.voices:
                    path, words = self._path("voices", key, ".wav"), self.voices[key].transcript
                else:
                    path, words = self.named[key]
                audio = load_audio(path, sample_rate)
                cached = self._samples[(key, sample_rate)] = VoiceSample(audio, words)
            return cached

    # --- consents and custom voices -----------------------------------------------------------------------

    def add_consent(self, name: str | None, language: str | None, recording: bytes | None) -> Consent:
        self._writable()
        _required(name, "name")
        _required(language, "language")
        _audio(recording, "recording")
        consent = Consent(f"cons_{uuid.uuid4().hex}", name.strip(), language.strip(), int(time.time()))
        with self._lock:
            self._write_bytes(self._path("consents", consent.id, ".audio"), recording)
            self._write_json("consents", consent.id, asdict(consent))
            self.consents[consent.id] = consent
        return consent

    def rename_consent(self, consent_id: str, name: str) -> Consent:
        _required(name, "name")
        with self._lock:
            consent = Consent(**{**asdict(self.consent(consent_id)), "name": name.strip()})
            self._write_json("consents", consent_id, asdict(consent))
            self.consents[consent_id] = consent
        return consent

    def consent(self, consent_id: str) -> Consent:
        if consent_id not in self.consents:
            raise APIError(404, f"no voice consent {consent_id!r}", "consent_id", code="not_found")
        return self.consents[consent_id]

    def delete_consent(self, consent_id: str) -> None:
        self.consent(consent_id)
        users = sorted(voice.id for voice in self.voices.values() if voice.consent == consent_id)
        if users:
            raise APIError(400, f"voice consent {consent_id} is used by {', '.join(users)}: delete those voices first",
                           "consent_id")
        with self._lock:
            self._remove("consents", consent_id, ".audio")
            del self.consents[consent_id]

    def add_voice(self, name: str | None, consent_id: str | None, transcript: str | None, sample: bytes | None
                  ) -> CustomVoice:
        self._writable()
        _required(name, "name")
        _required(transcript, "transcript")
        if consent_id not in self.consents:
            raise APIError(400, f"consent {consent_id!r} does not exist: create it first with POST "
                                f"/v1/audio/voice_consents", "consent")
        samples, rate = _audio(sample, "audio_sample")
        seconds = len(samples) / rate
        if not SAMPLE_SECONDS[0] <= seconds <= SAMPLE_SECONDS[1]:
            raise APIError(400, f"audio_sample lasts {seconds:.2f} s: expected {SAMPLE_SECONDS[0]} to "
                                f"{SAMPLE_SECONDS[1]} s of speech", "audio_sample")
        voice = CustomVoice(f"voice_{uuid.uuid4().hex}", name.strip(), consent_id, transcript.strip(), int(time.time()))
        with self._lock:
            with replaced_atomically(self._path("voices", voice.id, ".wav")) as temporary:
                sf.write(temporary, samples, rate, format="WAV", subtype="FLOAT")
            self._write_json("voices", voice.id, asdict(voice))
            self.voices[voice.id] = voice
        return voice

    def delete_voice(self, voice_id: str) -> None:
        with self._lock:
            if voice_id not in self.voices:
                raise APIError(404, f"no custom voice {voice_id!r}", "voice_id", code="not_found")
            self._remove("voices", voice_id, ".wav")
            del self.voices[voice_id]
            self._samples = {key: value for key, value in self._samples.items() if key[0] != voice_id}

    # --- files --------------------------------------------------------------------------------------------

    def _writable(self) -> None:
        if self.directory is None:
            raise APIError(400, "this server keeps no custom voices: start it with --voices-dir DIR")

    def _path(self, kind: str, item_id: str, suffix: str) -> Path:
        return self.directory / kind / f"{item_id}{suffix}"

    def _write_json(self, kind: str, item_id: str, record: dict) -> None:
        self._write_bytes(self._path(kind, item_id, ".json"), json.dumps(record, indent=1).encode())

    @staticmethod
    def _write_bytes(path: Path, data: bytes) -> None:
        with replaced_atomically(path) as temporary:
            temporary.write_bytes(data)

    def _remove(self, kind: str, item_id: str, data_suffix: str) -> None:
        self._path(kind, item_id, ".json").unlink(missing_ok=True)  # the record first: then it is gone for good
        self._path(kind, item_id, data_suffix).unlink(missing_ok=True)

    def _read_all(self, kind: str, record: type) -> list:
        items = []
        for path in sorted((self.directory / kind).glob("*.json")):
            try:
                items.append(record(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError) as error:
                raise InputError(f"voices directory: cannot read {path}: {error}") from None
        return items


def parse_named_voice(spec: str) -> tuple[str, tuple[str, str]]:
    """--voice NAME=AUDIO:TEXT: a recording and its words, asked for by NAME."""
    from voxport.audio.io import check_readable

    name, _, rest = spec.partition("=")
    audio, _, text = rest.partition(":")
    if not name or not audio or not text.strip() or name.isdigit() or name in OPENAI_VOICES:
        raise InputError(f"--voice {spec!r}: expected NAME=AUDIO:TEXT with a NAME that is neither a number nor "
                         f"a built-in voice")
    check_readable(audio)
    return name, (audio, text.strip())


def _required(value: str | None, param: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise APIError(400, f"{param} is missing: expected a non-empty text field", param)


def _audio(data: bytes | None, param: str) -> tuple[np.ndarray, int]:
    if data is None:
        raise APIError(400, f"{param} is missing: expected an audio file upload", param)
    if len(data) > MAX_UPLOAD_BYTES:
        raise APIError(413, f"{param} holds {len(data)} bytes; the limit is {MAX_UPLOAD_BYTES}", param)
    samples, rate = read_audio_bytes(data, param)
    if not np.isfinite(samples).all():
        raise APIError(400, f"{param} holds NaN or infinite samples: expected real audio", param)
    return samples, rate
