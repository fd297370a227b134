"""A third model family, registered with one registry entry and no edit in serve/, is served by what it
declares it can do; and a failure in the middle of a stream reaches the client as a failure."""

import base64
import io
import json
import socket
import threading
import time

import httpx2  # the openai SDK's HTTP client
import numpy as np
import openai
import pytest
import soundfile as sf
import torch
import uvicorn

from voxport.models import registry
from voxport.models.base import SpeechDefaults, SpokenAudio
from voxport.models.sampling import SamplingSettings
from voxport.serve.app import ServerState, create_app
from voxport.serve.server import load_models
from voxport.serve.voices import VoiceBook

RATE = 16000  # not CSM's 24 kHz: the server must take the rate from the model


class StubSpeech:
    """Speaks a 440 Hz tone, 0.2 s a chunk in two pieces; breaks after the first piece on the word "explode"."""

    family = "stub"
    step_unit = "frame"
    speaks_text = True
    speech_defaults = SpeechDefaults(sampling=SamplingSettings(temperature=0.9, top_k=50))
    sample_rate = RATE
    step_rate = 12.5

    def __init__(self):
        self.specs = []

    @classmethod
    def load(cls, source, device, dtype):
        return cls()

    def speak(self, specs, on_step=None):
        self.specs += specs
        return [SpokenAudio(np.concatenate([piece.audio for piece in self._pieces(spec)]), RATE, 2) for spec in specs]

    def speak_stream(self, spec):
        self.specs.append(spec)
        return self._pieces(spec)

    def count_text_tokens(self, text):
        return len(text.split())

    def _pieces(self, spec):
        tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(int(0.2 * RATE)) / RATE)).astype(np.float32)
        yield SpokenAudio(tone[: len(tone) // 2], RATE, 1)
        if "explode" in spec.text:
            raise RuntimeError("the stub broke down")
        yield SpokenAudio(tone[len(tone) // 2 :], RATE, 1)


@pytest.fixture
def stub_server(tmp_path, monkeypatch, speech_wav):
    family = registry.ModelFamily(
        "stub", "stub_tts", "stub speech", f"{__name__}:StubSpeech", f"{__name__}:StubSpeech", capability="speaks_text"
    )
    monkeypatch.setattr(registry, "families", lambda: {"stub": family})
    checkpoint = tmp_path / "stub"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps({"model_type": "stub_tts"}))
    models = load_models(
        [f"voice-box={checkpoint}"],
        torch.device("cpu"),
        torch.float32,
        max_queue=4,
        max_batch=4,
        progress=lambda line: None,
    )
    voices = VoiceBook(tmp_path / "voices", {"narrator": (str(speech_wav), "A short recorded line.")})
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(ServerState(models=models, voices=voices)), host="127.0.0.1", port=port, log_level="critical"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", models["voice-box"].service.model
    server.should_exit = True
    thread.join(timeout=10)


def sdk(base):
    return openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)


def test_a_registered_family_is_served_by_what_it_can_do(stub_server):
    base, model = stub_server
    client = sdk(base)
    listed = client.models.list().data
    assert [(entry.id, entry.family, entry.capabilities) for entry in listed] == [("voice-box", "stub", ["speech"])]
    audio = client.audio.speech.create(model="voice-box", voice="alloy", input="Hello.", response_format="wav")
    samples, rate = sf.read(io.BytesIO(audio.content), dtype="float32")
    assert rate == RATE and len(samples) == int(0.2 * RATE)
    with pytest.raises(openai.BadRequestError, match="cannot answer audio"):
        client.chat.completions.create(model="voice-box", messages=[{"role": "user", "content": "Hi"}])


def test_the_voice_sample_and_the_chunks_spoken_are_the_context(stub_server):
    base, model = stub_server
    sentence = "A sentence that is long enough to need a second chunk when four of them are spoken. "
    client = sdk(base)
    client.audio.speech.create(model="voice-box", voice="narrator", input=sentence * 4, response_format="pcm")
    first, second = model.specs
    assert first.text + " " + second.text == (sentence * 4).strip()
    assert [sample.text for sample in first.context] == ["A short recorded line."]
    assert [sample.text for sample in second.context] == ["A short recorded line.", first.text]
    assert len(second.context[1].audio) == int(0.2 * RATE)  # the first chunk's whole audio
    assert first.context[0].audio.shape == (RATE // 2,)  # the 0.5 s sample, resampled to the model's rate


def test_a_failure_mid_stream_is_an_sse_error_event(stub_server):
    base, _ = stub_server
    with sdk(base).audio.speech.with_streaming_response.create(
        model="voice-box", voice="alloy", input="Please explode.", response_format="pcm", stream_format="sse"
    ) as response:
        events = [
            json.loads(line.removeprefix("data: ")) for line in response.iter_lines() if line.startswith("data: ")
        ]
    assert [event["type"] for event in events] == ["speech.audio.delta", "error"]
    assert len(base64.b64decode(events[0]["audio"])) == int(0.1 * RATE) * 2
    assert "the stub broke down" in events[1]["error"]["message"]


def test_a_failure_mid_stream_aborts_the_raw_audio_transfer(stub_server):
    base, _ = stub_server
    received = b""
    with pytest.raises(httpx2.RemoteProtocolError, match="incomplete chunked read"):
        with sdk(base).audio.speech.with_streaming_response.create(
            model="voice-box", voice="alloy", input="Please explode.", response_format="pcm", stream_format="audio"
        ) as response:
            for piece in response.iter_bytes():
                received += piece
    assert len(received) == int(0.1 * RATE) * 2  # the first piece arrived; the transfer did not end cleanly


def test_a_failure_before_any_audio_is_a_server_error(stub_server):
    base, _ = stub_server
    with pytest.raises(openai.InternalServerError, match="the stub broke down"):
        sdk(base).audio.speech.create(model="voice-box", voice="alloy", input="Please explode.")


def test_metrics_label_the_route_not_the_path(stub_server):
    base, _ = stub_server
    for voice in ("voice_a", "voice_b"):
        assert httpx2.delete(f"{base}/v1/audio/voices/{voice}").status_code == 404
    metrics = httpx2.get(f"{base}/metrics").text
    assert 'voxport_requests_total{endpoint="/v1/audio/voices/{voice_id}",status="404"} 2.0' in metrics
    assert "voice_a" not in metrics
