"""What a realtime session's client may set with session.update (OpenAI's Realtime API, GA shapes), checked
before anything changes: the system prompt, the reply's modalities and length, the audio formats both ways
(pcm16 at 24 kHz, G.711 µ-law and A-law at 8 kHz) and turn detection. A value this server cannot honour is
an EventError, never silently ignored."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import soundfile as sf

from voxport.audio.voice_activity import vad_available
from voxport.models.base import ChatSettings
from voxport.serve.chat import VOICES

SERVER_VAD: dict[str, Any] = {  # OpenAI's defaults
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 500,
    "create_response": True,
    "interrupt_response": True,
}
HARMLESS: dict[str, tuple[Any, ...]] = {  # options clients send that change nothing here when they hold these values
    "tools": ([],),
    "tool_choice": ("auto", "none"),
    "tracing": (None,),
    "truncation": ("auto",),
    "include": (None, []),
}


class EventError(Exception):
    """A client event the session refuses: an `error` event in OpenAI's shape, and the session goes on."""

    def __init__(
        self, message: str, param: str | None = None, code: str | None = None, kind: str = "invalid_request_error"
    ):
        super().__init__(message)
        self.message, self.param, self.code, self.kind = message, param, code, kind


@dataclass(frozen=True)
class AudioFormat:
    """One of the Realtime API's audio formats: raw mono samples, as libsndfile reads and writes them."""

    type: str
    rate: int
    subtype: str  # libsndfile's name for the sample encoding
    sample_bytes: int

    def decode(self, raw: bytes, param: str) -> np.ndarray:
        """Float32 samples at `rate` of raw bytes in this format."""
        if raw[:4] == b"RIFF" and raw[8:12] == b"WAVE":
            raise EventError(
                f"{param} is a WAV file: send the raw samples ({self.describe_in_words()}), without a header",
                param,
                "invalid_audio_format",
            )
        if len(raw) % self.sample_bytes:
            raise EventError(
                f"{param} holds {len(raw)} bytes: {self.describe_in_words()} comes in whole {self.sample_bytes}-byte "
                "samples",
                param,
                "invalid_audio_format",
            )
        if not raw:
            return np.zeros(0, np.float32)
        samples, _ = sf.read(
            io.BytesIO(raw), format="RAW", subtype=self.subtype, samplerate=self.rate, channels=1, dtype="float32"
        )
        return samples

    def encode(self, samples: np.ndarray) -> bytes:
        """Raw bytes in this format of float32 samples at `rate`."""
        buffer = io.BytesIO()
        sf.write(buffer, np.clip(samples, -1.0, 1.0), self.rate, format="RAW", subtype=self.subtype)
        return buffer.getvalue()

    def describe(self) -> dict[str, Any]:
        return {"type": self.type, "rate": self.rate}

    def describe_in_words(self) -> str:
        return f"{self.type}, {self.subtype.replace('_', '').lower()} mono at {self.rate} Hz"


FORMATS = {
    "audio/pcm": AudioFormat("audio/pcm", 24000, "PCM_16", 2),
    "audio/pcmu": AudioFormat("audio/pcmu", 8000, "ULAW", 1),
    "audio/pcma": AudioFormat("audio/pcma", 8000, "ALAW", 1),
}
PCM16 = FORMATS["audio/pcm"]


@dataclass(frozen=True)
class SessionConfig:
    """A session's settings; a reply reads them when it starts."""

    instructions: str | None = None  # the system prompt; None: the model's own persona
    output_modalities: tuple[str, ...] = ("audio",)
    max_output_tokens: int | None = None  # None ("inf"): the model's default
    input_format: AudioFormat = PCM16
    output_format: AudioFormat = PCM16
    voice: str = "default"
    turn_detection: dict[str, Any] | None = field(default_factory=lambda: dict(SERVER_VAD) if vad_available() else None)

    @property
    def speaks(self) -> bool:
        return "audio" in self.output_modalities

    def settings(self, seed: int | None) -> ChatSettings:
        """The conversation's settings: changing any of them reopens it with the history so far."""
        return ChatSettings(
            mode="a2ta" if self.speaks else "a2t",
            persona=self.instructions,
            max_new_tokens=self.max_output_tokens,
            seed=seed,
        )

    def describe(self, model: str, session_id: str) -> dict[str, Any]:
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": session_id,
            "model": model,
            "instructions": self.instructions or "",
            "output_modalities": list(self.output_modalities),
            "max_output_tokens": self.max_output_tokens or "inf",
            "tools": [],
            "tool_choice": "auto",
            "audio": {
                "input": {
                    "format": self.input_format.describe(),
                    "turn_detection": self.turn_detection,
                    "transcription": None,
                    "noise_reduction": None,
                },
                "output": {"format": self.output_format.describe(), "voice": self.voice, "speed": 1.0},
            },
        }

    def updated(self, session: Any) -> SessionConfig:
        """These settings with session.update's `session` applied; EventError (nothing changed) if any part of
        it cannot be honoured."""
        session = _object(session, "session")
        if session.get("type", "realtime") != "realtime":
            raise EventError(
                f"session.type '{session.get('type')}' is not available here: expected realtime", "session.type"
            )
        known = {"type", "object", "id", "model", "instructions", "output_modalities", "max_output_tokens", "audio"}
        for name in sorted(set(session) - known):
            if name not in HARMLESS:
                raise EventError(f"session.{name} is not supported here", f"session.{name}", "unsupported_field")
            if session[name] not in HARMLESS[name]:
                raise EventError(
                    f"session.{name} {json.dumps(session[name])} is not supported here: expected "
                    + " or ".join(json.dumps(value) for value in HARMLESS[name]),
                    f"session.{name}",
                    "unsupported_field",
                )
        chosen: dict[str, Any] = {}
        if "instructions" in session:
            chosen["instructions"] = _instructions(session["instructions"])
        if "output_modalities" in session:
            modalities = session["output_modalities"]
            if modalities not in (["audio"], ["text"]):
                raise EventError('session.output_modalities must be ["audio"] or ["text"]', "session.output_modalities")
            chosen["output_modalities"] = tuple(modalities)
        if "max_output_tokens" in session:
            chosen["max_output_tokens"] = max_tokens(session["max_output_tokens"], "session.max_output_tokens")
        audio = _object(session.get("audio", {}), "session.audio")
        _only(audio, {"input", "output"}, "session.audio")
        heard = _object(audio.get("input", {}), "session.audio.input")
        _only(heard, {"format", "turn_detection", "transcription", "noise_reduction"}, "session.audio.input")
        for name in ("transcription", "noise_reduction"):
            if heard.get(name) is not None:
                raise EventError(
                    f"session.audio.input.{name} is not available here: expected null",
                    f"session.audio.input.{name}",
                    "unsupported_field",
                )
        if "format" in heard:
            chosen["input_format"] = audio_format(heard["format"], "session.audio.input.format")
        if "turn_detection" in heard:
            chosen["turn_detection"] = turn_detection(heard["turn_detection"])
        spoken = _object(audio.get("output", {}), "session.audio.output")
        _only(spoken, {"format", "voice", "speed"}, "session.audio.output")
        if "format" in spoken:
            chosen["output_format"] = audio_format(spoken["format"], "session.audio.output.format")
        if "voice" in spoken:
            if spoken["voice"] not in VOICES:
                raise EventError(
                    f"session.audio.output.voice {json.dumps(spoken['voice'])} is unknown: the model speaks in one "
                    f"voice, named by any of {', '.join(VOICES)}",
                    "session.audio.output.voice",
                )
            chosen["voice"] = spoken["voice"]
        if spoken.get("speed", 1.0) != 1.0:
            raise EventError(
                "session.audio.output.speed must be 1.0 here", "session.audio.output.speed", "unsupported_field"
            )
        return replace(self, **chosen)


def audio_format(value: Any, param: str) -> AudioFormat:
    chosen = _object(value, param)
    found = FORMATS.get(str(chosen.get("type")))
    if found is None or chosen.get("rate", found.rate) != found.rate:
        raise EventError(
            f"{param} {json.dumps(chosen)} is not available here: expected one of "
            + ", ".join(json.dumps(known.describe()) for known in FORMATS.values()),
            param,
            "unsupported_audio_format",
        )
    return found


def turn_detection(value: Any) -> dict[str, Any] | None:
    param = "session.audio.input.turn_detection"
    if value is None:
        return None
    chosen = _object(value, param)
    if chosen.get("type") != "server_vad":
        raise EventError(
            f"{param}.type must be server_vad (or turn_detection null, to commit turns yourself)",
            f"{param}.type",
            "unsupported_turn_detection",
        )
    if not vad_available():
        raise EventError(
            "server_vad needs the silero-vad package on the server (pip install 'voxport[realtime]'): set "
            "turn_detection to null and commit turns yourself",
            param,
            "unsupported_turn_detection",
        )
    _only(chosen, set(SERVER_VAD) | {"idle_timeout_ms"}, param)
    if chosen.get("idle_timeout_ms") is not None:
        raise EventError(f"{param}.idle_timeout_ms is not available here: expected null", f"{param}.idle_timeout_ms")
    merged = {**SERVER_VAD, **{key: value for key, value in chosen.items() if value is not None}}
    merged.pop("idle_timeout_ms", None)
    if isinstance(merged["threshold"], bool) or not isinstance(merged["threshold"], (int, float)):
        raise EventError(f"{param}.threshold must be a number in (0, 1)", f"{param}.threshold")
    if not 0 < merged["threshold"] < 1:
        raise EventError(f"{param}.threshold must be in (0, 1)", f"{param}.threshold")
    for name in ("prefix_padding_ms", "silence_duration_ms"):
        if isinstance(merged[name], bool) or not isinstance(merged[name], int) or merged[name] < 0:
            raise EventError(f"{param}.{name} must be a non-negative integer", f"{param}.{name}")
    for name in ("create_response", "interrupt_response"):
        if not isinstance(merged[name], bool):
            raise EventError(f"{param}.{name} must be true or false", f"{param}.{name}")
    return merged


def max_tokens(value: Any, param: str) -> int | None:
    if value == "inf":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise EventError(f'{param} must be a positive integer or "inf"', param)
    return value


def _instructions(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise EventError("session.instructions must be a string", "session.instructions")
    return value if value and value.strip() else None


def _object(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise EventError(f"{param} must be a JSON object", param)
    return value


def _only(value: dict[str, Any], known: set[str], param: str) -> None:
    unknown = sorted(set(value) - known)
    if unknown:
        raise EventError(
            f"{param}: unknown field {', '.join(unknown)} (expected {', '.join(sorted(known))})",
            f"{param}.{unknown[0]}",
            "unsupported_field",
        )
