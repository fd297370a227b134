"""Covo-Audio's audio front end: log-mel features, placeholder counts, resampling, segmentation, bad audio."""

import io

import numpy as np
import pytest
import soundfile as sf
import soxr

from conftest import shared_data
from voxport.audio.features import whisper_log_mel
from voxport.errors import AudioError
from voxport.models.covo.frontend import SEGMENT_SAMPLES, prepare_clip


def numpy_log_mel(samples_16k: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """The same formula, independently, in float64 NumPy: centred frames, periodic Hann, |rfft|^2."""
    audio = np.zeros(480000)
    audio[: min(len(samples_16k), 480000)] = samples_16k[:480000]
    padded = np.pad(audio, (200, 200), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, 400)[::160]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2
    mel = filters.astype(np.float64) @ power[:-1].T
    log_mel = np.log10(np.maximum(mel, 1e-10))
    log_mel = np.maximum(log_mel, log_mel.max() - 8.0)
    return (log_mel + 4.0) / 4.0


def test_log_mel_matches_an_independent_float64_computation(speech_clips):
    samples = prepare_clip(speech_clips[0]).segments[0]
    filters = np.load(shared_data("mel_filters.npz"))["mel_128"]
    ours = whisper_log_mel(samples, n_mels=128)
    reference = numpy_log_mel(samples.astype(np.float64), filters)
    assert ours.shape == (128, 3000) and ours.dtype.is_floating_point
    assert np.max(np.abs(ours.numpy() - reference)) < 1e-4


def test_placeholder_counts_of_the_shared_clips(speech_clips):
    assert [prepare_clip(clip).placeholders for clip in speech_clips] == [52, 33]


def test_trim_and_pad_rules():
    clip = prepare_clip(np.full(24000 + 250, 0.1, dtype=np.float32))  # 1 s and 250 samples at 24 kHz
    assert len(clip.samples) == 24480  # trimmed to 24240 (whole 240-sample hops), padded to 480s
    assert clip.placeholders == 7  # 102 frames at 100 Hz -> 51 -> 26 -> 13 -> 7
    assert len(clip.segments) == 1 and len(clip.segments[0]) == 16320


def test_stereo_and_other_rates_match_mono_24k(tmp_path, speech_clips):
    speech, rate = sf.read(speech_clips[1], dtype="float32")
    mono_24k = soxr.resample(speech, rate, 24000)
    sf.write(tmp_path / "mono24.wav", mono_24k, 24000, subtype="FLOAT")
    stereo_44k = soxr.resample(speech, rate, 44100)
    sf.write(tmp_path / "stereo44.flac", np.stack([stereo_44k, stereo_44k], axis=1), 44100, subtype="PCM_24")
    reference = prepare_clip(tmp_path / "mono24.wav")
    other = prepare_clip(tmp_path / "stereo44.flac")
    assert other.placeholders == reference.placeholders
    difference = (whisper_log_mel(other.segments[0]) - whisper_log_mel(reference.segments[0])).abs()
    assert float(difference.mean()) < 1e-3 and float(difference.max()) < 0.02


def test_long_input_is_cut_into_30_second_segments(speech_clips):
    speech = prepare_clip(speech_clips[0]).samples
    long = np.tile(speech, 9)[: 65 * 24000]  # 65 s
    clip = prepare_clip(long)
    assert [len(segment) for segment in clip.segments] == [480000, 480000, 80000]
    assert clip.placeholders == 407  # 6500 frames at 100 Hz, halved four times (rounding up)
    assert SEGMENT_SAMPLES == 30 * 24000


def write_truncated_flac(path, speech_clip):
    data = io.BytesIO()
    sf.write(data, sf.read(speech_clip)[0], 48000, format="FLAC")
    path.write_bytes(data.getvalue()[: len(data.getvalue()) // 3])


def test_bad_audio_is_a_clear_error(tmp_path, speech_clips):
    sf.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    sf.write(tmp_path / "silent.wav", np.zeros(16000, dtype=np.float32), 16000)
    (tmp_path / "text.wav").write_text("these are not samples")
    write_truncated_flac(tmp_path / "truncated.flac", speech_clips[0])
    cases = {
        "missing.wav": "does not exist",
        "empty.wav": "is empty",
        "silent.wav": "is silent",
        "text.wav": "is not audio soundfile can read",
        "truncated.flac": "is not audio soundfile can read",
    }
    for name, message in cases.items():
        with pytest.raises(AudioError, match=message):
            prepare_clip(tmp_path / name)
