"""Read any file soundfile reads into mono float32 at a target rate; write audio files atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from voxport.errors import AudioError
from voxport.runtime.files import check_output_path, replaced_atomically


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Mono float32 samples of `path`, resampled to `sample_rate` (channels are averaged)."""
    path = check_readable(path)
    samples, file_rate = _read(path, lambda: sf.read(path, dtype="float32", always_2d=True))
    return resample(samples.mean(axis=1, dtype=np.float32), file_rate, sample_rate)


def resample(mono: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """Float32 samples at `target_rate` (soxr, high quality); unchanged when the rates agree."""
    if rate == target_rate:
        return mono
    return soxr.resample(mono, rate, target_rate, quality="HQ").astype(np.float32, copy=False)


def check_readable(path: str | Path) -> Path:
    """Fail fast, before a model loads, when `path` is not an audio file with samples in it."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file {path} does not exist")
    if _read(path, lambda: sf.info(path)).frames == 0:
        raise AudioError(f"audio file {path} is empty: expected at least one sample")
    return path


def _read(path: Path, reader):
    try:
        return reader()
    except (sf.LibsndfileError, RuntimeError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise AudioError(
            f"cannot read audio file {path} ({reason}): expected wav, flac, ogg or another format soundfile reads"
        ) from None


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

