from io import BytesIO

import numpy as np
import pytest
import soundfile as sf

from voxport.audio import io
from voxport.audio.io import (
    MIN_SECONDS,
    SILENCE_PEAK,
    check_readable,
    check_samples,
    check_writable,
    load_audio,
    read_audio,
    write_audio,
)
from voxport.errors import AudioError, InputError
from voxport.serve.audio_formats import pcm16, read_audio_bytes, streaming_wav_header
from voxport.serve.errors import APIError


def tone(rate, seconds=0.5, frequency=440.0):
    t = np.arange(int(rate * seconds)) / rate
    return (0.4 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def test_stereo_48k_becomes_mono_24k(tmp_path):
    left = tone(48000)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, left], axis=1), 48000, subtype="PCM_24")
    mono = load_audio(path, 24000)
    reference = tone(24000)
    assert mono.dtype == np.float32 and mono.shape == reference.shape
    assert np.max(np.abs(mono[200:-200] - reference[200:-200])) < 1e-3


def test_channels_are_averaged(tmp_path):
    path = tmp_path / "two.flac"
    sf.write(path, np.stack([np.full(2400, 0.5), np.full(2400, -0.25)], axis=1), 24000)
    assert np.allclose(load_audio(path, 24000), 0.125, atol=1e-4)


def test_unreadable_inputs(tmp_path):
    with pytest.raises(AudioError, match="does not exist"):
        check_readable(tmp_path / "missing.wav")
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all")
    with pytest.raises(AudioError, match="audio file .*notes.wav is not audio soundfile can read"):
        check_readable(text)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 24000)
    with pytest.raises(AudioError, match="is empty"):
        check_readable(empty)


def test_write_round_trip(tmp_path):
    path = write_audio(tmp_path / "out.wav", tone(24000), 24000)
    samples, rate = sf.read(path, dtype="float32")
    assert rate == 24000 and np.max(np.abs(samples - tone(24000))) < 1e-4


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def broken_write(file, data, rate):
        with open(file, "wb") as stream:
            stream.write(b"RIFF half a header")
        raise OSError("disk full")

    monkeypatch.setattr(io.sf, "write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        write_audio(tmp_path / "out.wav", tone(24000), 24000)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_outputs(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        check_writable(tmp_path / "no-dir" / "out.wav")
    with pytest.raises(InputError, match="is a directory"):
        check_writable(tmp_path)
    with pytest.raises(AudioError, match="no known audio extension"):
        check_writable(tmp_path / "out.mp9")


def wav_bytes(samples, rate=24000, subtype="FLOAT"):
    buffer = BytesIO()
    sf.write(buffer, samples, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.nan, "1 non-finite samples"),
        (np.inf, "1 non-finite samples"),
    ],
)
def test_non_finite_samples_are_refused_from_files_and_bytes(bad, message, tmp_path):
    samples = tone(24000)
    samples[100] = bad
    path = tmp_path / "bad.wav"
    path.write_bytes(wav_bytes(samples))
    with pytest.raises(AudioError, match=f"audio file .*bad.wav has {message}"):
        load_audio(path, 24000)
    with pytest.raises(AudioError, match=f"the body has {message}"):
        read_audio(wav_bytes(samples), "the body")


def test_truncated_wav_is_refused_but_a_streaming_header_is_not(tmp_path):
    whole = wav_bytes(tone(24000), subtype="PCM_16")
    (tmp_path / "cut.wav").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(
        AudioError,
        match=r"cut.wav is truncated: its header promises 24000 bytes of audio, the "
        r"file holds 11978",
    ):
        check_readable(tmp_path / "cut.wav")
    streamed = streaming_wav_header(24000) + pcm16(tone(24000))
    samples, rate = read_audio(streamed, "a stream")
    assert rate == 24000 and samples.shape == (12000,)


def test_clips_shorter_than_the_minimum_are_refused():
    rate = 24000
    with pytest.raises(AudioError, match="clip lasts 10 ms: expected at least 0.1 s"):
        check_samples(tone(rate, seconds=0.01), rate, "clip")
    assert check_samples(tone(rate, seconds=MIN_SECONDS), rate, "clip").shape == (2400,)


def test_one_silence_policy_for_files_bytes_samples_and_the_server(tmp_path):
    quiet = np.full(24000, SILENCE_PEAK / 2, dtype=np.float32)
    sf.write(tmp_path / "quiet.wav", quiet, 24000, subtype="FLOAT")
    with pytest.raises(AudioError, match="quiet.wav is silent"):
        check_readable(tmp_path / "quiet.wav")
    with pytest.raises(AudioError, match="samples is silent"):
        check_samples(quiet, 24000, "samples")
    with pytest.raises(APIError, match="input_audio.data is silent") as refused:
        read_audio_bytes(wav_bytes(quiet), "input_audio.data")
    assert refused.value.status == 400
