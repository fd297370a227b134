"""Audio bodies: whole files (wav, flac, mp3, opus) and streams (wav with an open-ended header, raw pcm)."""

from __future__ import annotations

import base64
import binascii
import io
import struct

import numpy as np
import soundfile as sf

from voxport.audio.io import read_audio
from voxport.errors import AudioError
from voxport.serve.errors import APIError

MEDIA_TYPES = {"wav": "audio/wav", "pcm": "audio/pcm", "flac": "audio/flac", "mp3": "audio/mpeg", "opus": "audio/ogg"}
_CONTAINERS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "mp3": ("MP3", None), "opus": ("OGG", "OPUS")}
STREAMABLE = ("wav", "pcm")
# A chat turn's input_audio.format, and the containers libsndfile reports for bytes of that format
INPUT_FORMATS = {
    "wav": ("WAV", "WAVEX", "RF64", "W64"),
    "mp3": ("MP3",),
    "flac": ("FLAC",),
    "ogg": ("OGG",),
    "opus": ("OGG",),
}


def supported_formats() -> list[str]:
    """pcm always; the others when this machine's libsndfile has their encoder."""
    formats = ["pcm"]
    for name, (container, subtype) in _CONTAINERS.items():
        if container in sf.available_formats() and (subtype is None or subtype in sf.available_subtypes(container)):
            formats.append(name)
    return formats


def encode(audio: np.ndarray, sample_rate: int, response_format: str) -> bytes:
    if response_format == "pcm":
        return pcm16(audio)
    container, subtype = _CONTAINERS[response_format]
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(audio, -1.0, 1.0), sample_rate, format=container, subtype=subtype)
    return buffer.getvalue()


def pcm16(audio: np.ndarray) -> bytes:
    """Raw little-endian signed 16-bit mono samples."""
    return (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def streaming_wav_header(sample_rate: int) -> bytes:
    """A WAV header whose sizes say 'unknown' (0xFFFFFFFF), as streaming players expect; PCM follows."""
    return (
        b"RIFF"
        + struct.pack("<I", 0xFFFFFFFF)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", 0xFFFFFFFF)
    )


def decode_base64_audio(data: str, limit_bytes: int, param: str) -> bytes:
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise APIError(400, f"{param} is not valid base64", param) from None
    if not raw:
        raise APIError(400, f"{param} is empty", param)
    if len(raw) > limit_bytes:
        raise APIError(413, f"{param} holds {len(raw)} bytes of audio; the limit is {limit_bytes}", param)
    return raw


def read_audio_bytes(raw: bytes, param: str) -> tuple[np.ndarray, int]:
    """Mono float32 samples and their rate, checked by the same input policy as audio files."""
    try:
        return read_audio(raw, param)
    except AudioError as error:
        raise APIError(400, str(error), param) from None


def check_declared_format(raw: bytes, declared: str | None, param: str) -> None:
    """A format the client named must be what its bytes are: a mismatch is the client's mistake, shown rather
    than hidden (bytes that are no audio at all are refused by read_audio_bytes, saying why)."""
    if declared is None:
        return
    try:
        container = sf.info(io.BytesIO(raw)).format
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError):
        return
    if container not in INPUT_FORMATS[declared]:
        raise APIError(
            400,
            f"{param} is '{declared}' but the audio is {container.lower()}: give the format the "
            "data is in, or leave format out",
            param,
        )
