"""Read audio (files or bytes) into checked mono float32 at a target rate; write audio files atomically.

Every clip a model hears passes one policy, `read_audio` for encoded audio and `check_samples` for samples,
whether it comes from a file (chat, tts --context, voices) or from a request body (the server):
- it must decode completely: a WAV whose header promises more data than the file holds is refused;
- every sample must be finite (no NaN or infinity);
- it must last at least MIN_SECONDS: shorter clips hold no speech a model can use;
- it must not be silent (peak below SILENCE_PEAK): a silent question or voice sample carries nothing.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from voxport.errors import AudioError, first_line
from voxport.runtime.files import check_output_path, replaced_atomically

MIN_SECONDS = 0.1  # the shortest clip taken: a bit over one 80 ms CSM codec frame
SILENCE_PEAK = 1e-4  # -80 dBFS: nothing a microphone would call speech
_UNKNOWN_SIZE = 0xFFFFFFFF  # what streaming writers put in a WAV header whose length is not yet known


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Checked mono float32 samples of the file `path`, resampled to `sample_rate`."""
    samples, rate = read_audio(_existing(path))
    return resample(samples, rate, sample_rate)


def read_audio(source: Path | bytes, name: str | None = None) -> tuple[np.ndarray, int]:
    """Mono float32 samples (channels averaged) and their rate, from a file or in-memory bytes, refused with
    an AudioError naming the input (`name`, or the file) unless they pass the policy above."""
    name = name or f"audio file {source}"
    try:
        data = source.read_bytes() if isinstance(source, Path) else bytes(source)
    except OSError as error:
        raise AudioError(f"cannot read {name}: {error.strerror or error}") from None
    _refuse_truncated_wav(data, name)
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as error:
        reason = getattr(error, "error_string", None) or first_line(error)
        raise AudioError(
            f"{name} is not audio soundfile can read ({reason.rstrip('.')}): expected wav, flac, "
            f"ogg, mp3 or another format it reads"
        ) from None
    return check_samples(samples.mean(axis=1, dtype=np.float32), rate, name), rate


def check_samples(samples: np.ndarray, rate: int, name: str) -> np.ndarray:
    """`samples` as float32 when they are finite, long enough and not silent; otherwise an AudioError."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.size == 0:
        raise AudioError(f"{name} is empty: expected at least {MIN_SECONDS} s of audio")
    if not np.isfinite(samples).all():
        raise AudioError(
            f"{name} has {int(np.count_nonzero(~np.isfinite(samples)))} non-finite samples "
            f"(NaN or infinity): expected finite audio"
        )
    if samples.size < MIN_SECONDS * rate:
        raise AudioError(f"{name} lasts {samples.size / rate * 1000:.0f} ms: expected at least {MIN_SECONDS} s")
    if np.max(np.abs(samples)) < SILENCE_PEAK:
        raise AudioError(f"{name} is silent (peak below -80 dBFS): expected speech")
    return samples


def resample(mono: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """Float32 samples at `target_rate` (soxr, high quality); unchanged when the rates agree."""
    if rate == target_rate:
        return mono
    return soxr.resample(mono, rate, target_rate, quality="HQ").astype(np.float32, copy=False)


def check_readable(path: str | Path) -> Path:
    """Fail fast, before a model loads, when `path` is not audio that passes the input policy."""
    read_audio(_existing(path))
    return Path(path)


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file {path} does not exist")
    return path


def _refuse_truncated_wav(data: bytes, name: str) -> None:
    """libsndfile reads a cut WAV without a word (it trusts the file's length): compare the data chunk's
    declared size with the bytes that are there. Streaming headers (size unknown) are taken as they are."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return
    offset = 12
    while offset + 8 <= len(data):
        chunk, size = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        if chunk == b"data":
            held = len(data) - offset - 8
            if size != _UNKNOWN_SIZE and size > held:
                raise AudioError(
                    f"{name} is truncated: its header promises {size} bytes of audio, the file "
                    f"holds {held}: expected a complete WAV file"
                )
            return
        offset += 8 + size + (size & 1)  # chunks are padded to an even length


def check_writable(path: str | Path) -> Path:
    """Fail before any work when `path` cannot receive an audio file."""
    path = check_output_path(path)
    if path.suffix.lstrip(".").upper() not in sf.available_formats():
        raise AudioError(f"output {path} has no known audio extension: expected .wav, .flac or .ogg")
    return path


def write_audio(path: str | Path, audio: np.ndarray, sample_rate: int) -> Path:
    """Write mono audio; a failure leaves no partial file (the file appears whole or not at all)."""
    path = check_writable(path)
    with replaced_atomically(path) as temporary:
        sf.write(temporary, np.clip(audio, -1.0, 1.0), sample_rate)
    return path
