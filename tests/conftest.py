"""Shared fixtures: tiny random checkpoints written by voxport itself; nothing touches the network."""

import os
import sys
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub reads its settings
# A package of two model families from outside voxport (tests/plugins), installed for this session the way
# pip would (a dist-info with entry points on the path): this process, subprocesses and Ray workers find it.
PLUGINS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins")
sys.path.insert(0, PLUGINS)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [PLUGINS, os.environ.get("PYTHONPATH")]))
# Bandwidth probes made by tests (subprocesses included) go to a scratch cache, never the user's.
os.environ["VOXPORT_CACHE_DIR"] = tempfile.mkdtemp(prefix="voxport-test-cache-")

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from voxport.models.covo import CovoAudioChat
from voxport.models.csm import CsmSpeech
from voxport.models.tiny import make_tiny_covo, make_tiny_csm, write_tiny_checkpoint

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "covo-audio"


@pytest.fixture(scope="session")
def tiny_csm_dir(tmp_path_factory) -> Path:
    return write_tiny_checkpoint(make_tiny_csm, tmp_path_factory.mktemp("models") / "tiny-csm", seed=0)


@pytest.fixture(scope="session")
def tiny_csm(tiny_csm_dir) -> CsmSpeech:
    return CsmSpeech.load(tiny_csm_dir, torch.device("cpu"), torch.float32)


@pytest.fixture
def fresh_tiny_csm(tiny_csm_dir) -> CsmSpeech:
    """A private copy for tests that change weights."""
    return CsmSpeech.load(tiny_csm_dir, torch.device("cpu"), torch.float32)


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory) -> Path:
    """Half a second of a gliding tone at 24 kHz: stands in for a recorded context turn."""
    rate = 24000
    t = np.arange(rate // 2) / rate
    samples = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t).astype(np.float32)
    path = tmp_path_factory.mktemp("audio") / "context.wav"
    sf.write(path, samples, rate)
    return path


@pytest.fixture(scope="session")
def tiny_covo_dir(tmp_path_factory) -> Path:
    return write_tiny_checkpoint(make_tiny_covo, tmp_path_factory.mktemp("models") / "tiny-covo", seed=0)


@pytest.fixture(scope="session")
def tiny_covo(tiny_covo_dir) -> CovoAudioChat:
    return CovoAudioChat.load(tiny_covo_dir, torch.device("cpu"), torch.float32)


def shared_data(name: str) -> Path:
    """A file or folder of ../shared/data/covo-audio: data that is not in the repository (CI places it beside
    the checkout). A test that needs it skips, saying so, on a clone without it."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"needs {name} from ../shared/data/covo-audio beside the checkout, which is absent")
    return path


@pytest.fixture(scope="session")
def speech_clips() -> list[Path]:
    """The two real speech clips shared beside the checkout (48 kHz, 24-bit, 8.2 s and 5.2 s)."""
    return [shared_data("003000298.wav"), shared_data("003000297.wav")]


@pytest.fixture(scope="module")
def ray_runtime():
    """An embedded Ray runtime of 2 CPUs for one test module (`voxport batch` joins it rather than start its own)."""
    ray = pytest.importorskip("ray")
    from voxport.batch.cluster import start

    start(cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def live_server(tiny_csm_dir, tiny_covo_dir, speech_wav):
    """One `voxport serve` process for every HTTP test: CSM as tts, Covo as chat, a named voice."""
    from serving import Server

    server = Server(
        "--model",
        f"tts={tiny_csm_dir}",
        "--model",
        f"chat={tiny_covo_dir}",
        "--voice",
        f"narrator={speech_wav}:A short recorded line.",
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def voice_clip_b64() -> str:
    """A second of a speech-like glide (varying pitch and loudness) as base64 WAV: a user turn for chat."""
    import base64
    import io

    t = np.arange(24000) / 24000
    samples = 0.3 * np.sin(2 * np.pi * (180 * t + 60 * t**2)) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    buffer = io.BytesIO()
    sf.write(buffer, samples.astype(np.float32), 24000, format="WAV")
    return base64.b64encode(buffer.getvalue()).decode()
