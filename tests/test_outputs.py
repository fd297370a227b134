"""Nothing lost: an existing output survives a run that fails early, is interrupted or is killed; streaming
writes a clearly named partial file; killed runs' temporaries are swept; writability is checked first."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from voxport.errors import InputError
from voxport.runtime.files import check_output_path, growing_file, replaced_atomically

OLD = np.linspace(-0.5, 0.5, 4800, dtype=np.float32)


def existing_output(tmp_path):
    target = tmp_path / "speech.wav"
    sf.write(target, OLD, 24000)
    return target, target.read_bytes()


def start_streaming(model_dir, target):
    """A streamed run long enough to be stopped while it writes (it is always stopped).

    It must hear Ctrl-C even where the tests themselves run with SIGINT ignored (a background job of a script):
    an ignored SIGINT is inherited, a handled one starts out as the default, so one is handled while it starts."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "voxport",
                "tts",
                "Long enough to be cut short.",
                "--model",
                str(model_dir),
                "-o",
                str(target),
                "--stream",
                "--max-tokens",
                "1500",
                "--min-tokens",
                "1500",
                "--seed",
                "1",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        signal.signal(signal.SIGINT, previous)


def wait_for_audio(partial, process):
    """Until the partial file holds samples (the first chunk is written)."""
    deadline = time.monotonic() + 600
    while not (partial.exists() and partial.stat().st_size > 44 and sf.info(partial).frames > 0):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no audio was streamed"
        time.sleep(0.2)


def test_a_killed_stream_leaves_the_old_file_and_a_playable_partial(tiny_csm_dir, tmp_path):
    target, before = existing_output(tmp_path)
    partial = tmp_path / "speech.partial.wav"
    process = start_streaming(tiny_csm_dir, target)
    try:
        wait_for_audio(partial, process)
    finally:
        process.kill()
        process.communicate()
    assert process.returncode == -signal.SIGKILL
    assert target.read_bytes() == before
    samples, rate = sf.read(partial)
    assert rate == 24000 and len(samples) >= 2 * 1920  # at least the first chunk, readable as it is
    assert sorted(path.name for path in tmp_path.iterdir()) == ["speech.partial.wav", "speech.wav"]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_stream_leaves_the_old_file_and_nothing_else(stop, tiny_csm_dir, tmp_path):
    target, before = existing_output(tmp_path)
    process = start_streaming(tiny_csm_dir, target)
    try:
        wait_for_audio(tmp_path / "speech.partial.wav", process)
        process.send_signal(stop)
        _, errors = process.communicate(timeout=600)
    finally:
        process.kill()
    assert process.returncode == 130 and errors.strip().splitlines()[-1] == "voxport: interrupted"
    assert target.read_bytes() == before
    assert [path.name for path in tmp_path.iterdir()] == ["speech.wav"]


@pytest.mark.parametrize("mode", [[], ["--stream"]])
def test_a_run_refused_before_the_work_leaves_the_old_file(mode, tiny_csm_dir, tmp_path):
    target, before = existing_output(tmp_path)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "voxport",
            "tts",
            "Too long.",
            "--model",
            str(tiny_csm_dir),
            "-o",
            str(target),
            "--max-tokens",
            "2048",
            *mode,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1].startswith("voxport: error: prompt (")
    assert "exceeds the model's context of 2048 positions" in run.stderr
    assert target.read_bytes() == before
    assert [path.name for path in tmp_path.iterdir()] == ["speech.wav"]


def test_a_successful_stream_replaces_the_old_file(tmp_path):
    target, before = existing_output(tmp_path)
    with growing_file(target) as partial:
        sf.write(partial, -OLD, 24000)
        assert partial.name == "speech.partial.wav" and target.read_bytes() == before
    np.testing.assert_allclose(sf.read(target, dtype="float32")[0], -OLD, atol=1e-4)
    assert [path.name for path in tmp_path.iterdir()] == ["speech.wav"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target, before = existing_output(tmp_path)
    with pytest.raises(OSError, match="disk full"), replaced_atomically(target) as temporary:
        temporary.write_bytes(b"RIFF half")
        raise OSError("disk full")
    assert target.read_bytes() == before
    assert [path.name for path in tmp_path.iterdir()] == ["speech.wav"]


def test_temporaries_of_killed_runs_are_swept_and_live_ones_kept(tmp_path):
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    stale = tmp_path / f".speech.wav.voxport-{finished.pid}-x1y2z3.wav"
    stale_dir = tmp_path / f".tiny.voxport-{finished.pid}-a1b2c3"
    live = tmp_path / f".speech.wav.voxport-{os.getpid()}-q9w8e7.wav"
    stale.write_bytes(b"half")
    stale_dir.mkdir()
    live.write_bytes(b"in progress")
    check_output_path(tmp_path / "speech.wav")
    assert sorted(path.name for path in tmp_path.iterdir()) == [live.name]


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs Linux's /proc, where no file can be created")
def test_writability_is_checked_by_creating_a_file():
    with pytest.raises(InputError, match=r"output /proc/x.wav cannot be written: No such file or directory"):
        check_output_path("/proc/x.wav")
