import numpy as np
import pytest
import soundfile as sf

from voxport.audio import io
from voxport.audio.io import check_readable, check_writable, load_audio, write_audio
from voxport.errors import AudioError, InputError


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
    sf.write(path, np.stack([np.full(100, 0.5), np.full(100, -0.25)], axis=1), 24000)
    assert np.allclose(load_audio(path, 24000), 0.125, atol=1e-4)


def test_unreadable_inputs(tmp_path):
    with pytest.raises(AudioError, match="does not exist"):
        check_readable(tmp_path / "missing.wav")
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all")
    with pytest.raises(AudioError, match="cannot read audio file .*notes.wav"):
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
