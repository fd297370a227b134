"""Voices for /v1/audio/speech: OpenAI's built-in names, voices named on the command line, and custom voices
made OpenAI's way (a consent recording, then a voice sample with its transcript), kept in a directory so they
outlive a restart.

On disk (`--voices-dir`): consents/<id>.json with the recording beside it as <id>.audio (the bytes uploaded),
voices/<id>.json with the sample as <id>.wav (mono float32 at the rate uploaded). The JSON is written last, so
a file set without its JSON is an interrupted upload: it is ignored, and removed when the store next opens.
Every file is written through a temporary (runtime/files.py); those a killed server left are swept when the
store opens and before each write, and no temporary's name can pass for a record's.

Every check and the write it allows happen under one lock: a consent cannot be deleted between a voice's
check that it exists and that voice's write. A storage failure (a full disk, a read-only directory, a sample
file gone) is a 507 or 503 saying what failed, never naming a path.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from voxport.audio.io import load_audio
from voxport.errors import InputError, VoxportError
from voxport.models.base import VoiceSample
from voxport.runtime.files import replaced_atomically, sweep_stale
from voxport.serve.audio_formats import read_audio_bytes
from voxport.serve.errors import APIError
from voxport.serve.fields import speaker_id

# OpenAI's built-in voice names and the CSM speaker id each one speaks as. CSM-1B has no fixed voices: a
# speaker id without a voice sample gives a voice chosen by the seed, so these names let stock clients work;
# a custom voice (or --voice) keeps one voice across requests.
OPENAI_VOICES = {
    name: speaker
    for speaker, name in enumerate(
        [
            "alloy",
            "ash",
            "ballad",
            "coral",
            "echo",
            "fable",
            "onyx",
            "nova",
            "sage",
            "shimmer",
            "verse",
            "marin",
            "cedar",
        ]
    )
}
MAX_UPLOAD_BYTES = 10 * 2**20  # OpenAI's limit for consent recordings and voice samples
SAMPLE_SECONDS = (0.3, 30.0)  # a voice sample shorter says too little; a longer one crowds the model's context
MAX_TRANSCRIPT_CHARS = 1000  # 30 s of speech is some 500 characters; every use of the voice reads all of it
MAX_NAME_CHARS = 256  # names and languages
MAX_LISTED_VOICES = 10  # custom voice ids an unknown voice's error lists (GET /v1/audio/voices lists them all)
_KINDS = {"consents": ".audio", "voices": ".wav"}  # the data file's suffix beside each record
# The only names read as records and their data: temporaries (.NAME.voxport-PID-XXXX.json) and strays never pass
_IDS = {"consents": r"cons_[0-9a-f]{32}", "voices": r"voice_[0-9a-f]{32}"}
_RECORDS = {kind: re.compile(rf"{_IDS[kind]}\.json") for kind in _KINDS}
_DATA = {kind: re.compile(rf"{_IDS[kind]}{re.escape(suffix)}") for kind, suffix in _KINDS.items()}
ORPHAN_SECONDS = 60  # a data file this old without its record is an upload killed before the record was written


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
        return {
            "id": self.id,
            "name": self.name,
            "object": "audio.voice",
            "type": "audio_sample",
            "created_at": self.created_at,
            "consent": self.consent,
            "transcript": self.transcript,
        }


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
        self._lock = threading.Lock()  # every check-and-write, and the dicts below
        self._samples: dict[tuple[str, int], VoiceSample] = {}
        self.consents: dict[str, Consent] = {}
        self.voices: dict[str, CustomVoice] = {}
        if directory is not None:
            try:
                for kind in _KINDS:
                    (directory / kind).mkdir(parents=True, exist_ok=True)
                self._sweep()
                self._sweep_orphans()
                self.consents = {item.id: item for item in self._read_all("consents", Consent)}
                self.voices = {item.id: item for item in self._read_all("voices", CustomVoice)}
            except OSError as error:
                raise InputError(f"voices directory {directory} cannot be used: {error.strerror or error}") from None

    # --- speech requests ---------------------------------------------------------------------------------

    def resolve(self, voice: str | dict, sample_rate: int) -> ResolvedVoice:
        """A request's `voice`: a built-in name, a speaker id, a --voice name, or {"id": custom voice id}."""
        key = voice.get("id") if isinstance(voice, dict) else voice
        if isinstance(voice, dict) and (sample := self._sample(key, sample_rate)) is not None:
            return ResolvedVoice(None, (sample,))
        if isinstance(voice, str):
            if voice in OPENAI_VOICES:
                return ResolvedVoice(OPENAI_VOICES[voice])
            if (speaker := speaker_id(voice)) is not None:
                return ResolvedVoice(speaker)
            if voice in self.named:
                return ResolvedVoice(None, (self._sample(voice, sample_rate),))
        with self._lock:
            custom = sorted(self.voices)
        listed = ", ".join(custom[:MAX_LISTED_VOICES]) + (
            f" and {len(custom) - MAX_LISTED_VOICES} more (GET /v1/audio/voices)"
            if len(custom) > MAX_LISTED_VOICES
            else ""
        )
        raise APIError(
            400,
            f"unknown voice {key!r}: expected one of {', '.join(self.names())}, a speaker id, "
            f'or {{"id": ...}} of a custom voice' + (f" ({listed})" if custom else ""),
            "voice",
            code="voice_not_found",
        )

    def names(self) -> list[str]:
        return [*OPENAI_VOICES, *sorted(self.named)]

    def listing(self) -> list[dict]:
        """GET /v1/audio/voices: built-in, named and custom voices."""
        built_in = [
            {"id": name, "name": name, "object": "audio.voice", "type": "builtin", "speaker": speaker}
            for name, speaker in OPENAI_VOICES.items()
        ]
        named = [
            {"id": name, "name": name, "object": "audio.voice", "type": "named", "transcript": words}
            for name, (_, words) in sorted(self.named.items())
        ]
        with self._lock:
            voices = list(self.voices.values())
        custom = [voice.to_api() for voice in sorted(voices, key=lambda voice: voice.created_at)]
        return built_in + named + custom

    def consent_list(self) -> list[Consent]:
        """The consents, oldest first."""
        with self._lock:
            return sorted(self.consents.values(), key=lambda consent: (consent.created_at, consent.id))

    def _sample(self, key: str, sample_rate: int) -> VoiceSample | None:
        """A custom or --voice voice's sample at `sample_rate` (None when there is no such voice)."""
        with self._lock:
            self._sync_voice(key)
            cached = self._samples.get((key, sample_rate))
            if cached is None:
                if key in self.voices:
                    path, words = self._path("voices", key, ".wav"), self.voices[key].transcript
                elif key in self.named:
                    path, words = self.named[key]
                else:
                    return None
                try:
                    audio = load_audio(path, sample_rate)
                except VoxportError:
                    raise APIError(
                        503,
                        f"voice {key}'s sample cannot be read from the server's storage: delete "
                        "and make the voice again",
                        "voice",
                        kind="server_error",
                        code="voice_unavailable",
                    ) from None
                cached = self._samples[(key, sample_rate)] = VoiceSample(audio, words)
            return cached

    def _sync_voice(self, key: str) -> None:
        """Follow the directory for one custom voice id: another server on it (replicas: the entry) may have made
        or deleted it since this one read the directory. Under the lock."""
        if self.directory is None or not re.fullmatch(_IDS["voices"], key):
            return
        record = self._path("voices", key, ".json")
        try:
            exists = record.exists()
            if exists and key not in self.voices:
                self.voices[key] = CustomVoice(**json.loads(record.read_text()))
        except (OSError, ValueError, TypeError):
            return  # unreadable now (being written): the voice is as this server last knew it
        if not exists and key in self.voices:
            del self.voices[key]
            self._samples = {cached: value for cached, value in self._samples.items() if cached[0] != key}

    # --- consents and custom voices -----------------------------------------------------------------------

    def add_consent(self, name: str | None, language: str | None, recording: bytes | None) -> Consent:
        self._writable()
        _required(name, "name", MAX_NAME_CHARS)
        _required(language, "language", MAX_NAME_CHARS)
        _audio(recording, "recording")
        consent = Consent(f"cons_{uuid.uuid4().hex}", name.strip(), language.strip(), int(time.time()))
        with self._lock, _storing("the voice consent"):
            self._add("consents", consent.id, recording, asdict(consent))
            self.consents[consent.id] = consent
        return consent

    def rename_consent(self, consent_id: str, name: str) -> Consent:
        _required(name, "name", MAX_NAME_CHARS)
        with self._lock, _storing("the voice consent"):
            consent = Consent(**{**asdict(self._consent(consent_id)), "name": name.strip()})
            self._write_json("consents", consent_id, asdict(consent))
            self.consents[consent_id] = consent
        return consent

    def consent(self, consent_id: str) -> Consent:
        with self._lock:
            return self._consent(consent_id)

    def _consent(self, consent_id: str) -> Consent:
        if consent_id not in self.consents:
            raise APIError(404, f"no voice consent {consent_id!r}", "consent_id", code="not_found")
        return self.consents[consent_id]

    def delete_consent(self, consent_id: str) -> None:
        with self._lock, _storing("the voice consent"):
            self._consent(consent_id)
            users = sorted(voice.id for voice in self.voices.values() if voice.consent == consent_id)
            if users:
                raise APIError(
                    400,
                    f"voice consent {consent_id} is used by {', '.join(users)}: delete those voices first",
                    "consent_id",
                )
            self._remove("consents", consent_id)
            del self.consents[consent_id]

    def add_voice(
        self, name: str | None, consent_id: str | None, transcript: str | None, sample: bytes | None
    ) -> CustomVoice:
        self._writable()
        _required(name, "name", MAX_NAME_CHARS)
        _required(transcript, "transcript", MAX_TRANSCRIPT_CHARS)
        samples, rate = _audio(sample, "audio_sample")
        seconds = len(samples) / rate
        if not SAMPLE_SECONDS[0] <= seconds <= SAMPLE_SECONDS[1]:
            raise APIError(
                400,
                f"audio_sample lasts {seconds:.2f} s: expected {SAMPLE_SECONDS[0]} to {SAMPLE_SECONDS[1]} s of speech",
                "audio_sample",
            )
        wav = io.BytesIO()
        sf.write(wav, samples, rate, format="WAV", subtype="FLOAT")
        voice = CustomVoice(f"voice_{uuid.uuid4().hex}", name.strip(), consent_id, transcript.strip(), int(time.time()))
        with self._lock, _storing("the voice"):
            if consent_id not in self.consents:  # checked where it is used: a delete cannot come in between
                raise APIError(
                    400,
                    f"consent {consent_id!r} does not exist: create it first with POST /v1/audio/voice_consents",
                    "consent",
                )
            self._add("voices", voice.id, wav.getvalue(), asdict(voice))
            self.voices[voice.id] = voice
        return voice

    def delete_voice(self, voice_id: str) -> None:
        with self._lock, _storing("the voice"):
            if voice_id not in self.voices:
                raise APIError(404, f"no custom voice {voice_id!r}", "voice_id", code="not_found")
            self._remove("voices", voice_id)
            del self.voices[voice_id]
            self._samples = {key: value for key, value in self._samples.items() if key[0] != voice_id}

    # --- files (under the lock) ---------------------------------------------------------------------------

    def _writable(self) -> None:
        if self.directory is None:
            raise APIError(400, "this server keeps no custom voices: start it with --voices-dir DIR")

    def _path(self, kind: str, item_id: str, suffix: str) -> Path:
        return self.directory / kind / f"{item_id}{suffix}"

    def _add(self, kind: str, item_id: str, data: bytes, record: dict) -> None:
        """The data file, then the record that makes it count; a failure leaves neither."""
        self._sweep()
        data_path = self._path(kind, item_id, _KINDS[kind])
        try:
            _write_bytes(data_path, data)
            self._write_json(kind, item_id, record)
        except OSError:
            data_path.unlink(missing_ok=True)
            raise

    def _write_json(self, kind: str, item_id: str, record: dict) -> None:
        _write_bytes(self._path(kind, item_id, ".json"), json.dumps(record, indent=1).encode())

    def _remove(self, kind: str, item_id: str) -> None:
        self._path(kind, item_id, ".json").unlink(missing_ok=True)  # the record first: then it is gone for good
        self._path(kind, item_id, _KINDS[kind]).unlink(missing_ok=True)

    def _sweep(self) -> None:
        """Remove the temporaries of writes whose process was killed (a server's, or an earlier one's)."""
        for kind in _KINDS:
            sweep_stale(self.directory / kind)

    def _sweep_orphans(self) -> None:
        """Remove data files whose record never came (an upload killed between the two renames), once they
        are old enough not to be another server's write in progress."""
        for kind in _KINDS:
            for path in (self.directory / kind).iterdir():
                if _DATA[kind].fullmatch(path.name) and not path.with_suffix(".json").exists():
                    with suppress(OSError):
                        if time.time() - path.stat().st_mtime > ORPHAN_SECONDS:
                            path.unlink()

    def _read_all(self, kind: str, record: type) -> list:
        items = []
        for path in sorted((self.directory / kind).iterdir()):
            if not _RECORDS[kind].fullmatch(path.name):
                continue
            try:
                items.append(record(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError) as error:
                raise InputError(f"voices directory: cannot read {path}: {error}") from None
        return items


def _write_bytes(path: Path, data: bytes) -> None:
    with replaced_atomically(path) as temporary:
        temporary.write_bytes(data)


@contextmanager
def _storing(what: str) -> Iterator[None]:
    """A failure of the voices directory as a 507 (full) or 503 (unwritable, unreadable): the server's
    fault, told without the directory's path, which is the server's business."""
    try:
        yield
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else type(error).__name__
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise APIError(
                507,
                f"{what} was not saved: the server's voice storage is full ({reason})",
                kind="server_error",
                code="insufficient_storage",
            ) from None
        raise APIError(
            503,
            f"{what} was not saved: the server's voice storage failed ({reason})",
            kind="server_error",
            code="storage_unavailable",
        ) from None


def parse_named_voice(spec: str) -> tuple[str, tuple[str, str]]:
    """--voice NAME=AUDIO:TEXT: a recording and its words, asked for by NAME."""
    from voxport.audio.io import check_readable

    name, _, rest = spec.partition("=")
    audio, _, text = rest.partition(":")
    if not name or not audio or not text.strip() or name.isdigit() or name in OPENAI_VOICES:
        raise InputError(
            f"--voice {spec!r}: expected NAME=AUDIO:TEXT with a NAME that is neither a number nor a built-in voice"
        )
    check_readable(audio)
    return name, (audio, text.strip())


def _required(value: str | None, param: str, most: int) -> None:
    if not isinstance(value, str) or not value.strip():
        raise APIError(400, f"{param} is missing: expected a non-empty text field", param)
    if len(value.strip()) > most:
        raise APIError(400, f"{param} has {len(value.strip())} characters; the limit is {most}", param)


def _audio(data: bytes | None, param: str) -> tuple[np.ndarray, int]:
    if data is None:
        raise APIError(400, f"{param} is missing: expected an audio file upload", param)
    samples, rate = read_audio_bytes(data, param)
    if not np.isfinite(samples).all():
        raise APIError(400, f"{param} holds NaN or infinite samples: expected real audio", param)
    return samples, rate
