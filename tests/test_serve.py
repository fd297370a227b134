"""The HTTP server: a real uvicorn process on loopback with tiny checkpoints, a real HTTP client."""

import base64
import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from queue import SimpleQueue

import httpx
import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from voxport.serve.app import ServedModel, ServerState, create_app
from voxport.serve.speech import SpeechJob, run_speech
from voxport.serve.workers import Job, ModelWorker
from voxport.models.base import SpeechSpec


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(tiny_csm_dir, tiny_covo_dir, voice_wav, *extra):
    models = ["--model", f"tts={tiny_csm_dir}"] + (["--model", f"chat={tiny_covo_dir}"] if tiny_covo_dir else [])
    voices = ["--voice", f"narrator={voice_wav}:A short recorded line."] if voice_wav else []
    if "--voices-dir" not in extra:  # never the user's own voices directory
        voices += ["--voices-dir", tempfile.mkdtemp(prefix="voxport-voices-")]
    process = subprocess.Popen(
        [sys.executable, "-m", "voxport", "serve", *models, *voices, "--port", str(port := free_port()),
         "--device", "cpu", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stdout.read()}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError("server did not start")


@pytest.fixture(scope="module")
def server(tiny_csm_dir, tiny_covo_dir, speech_wav):
    process, base = start_server(tiny_csm_dir, tiny_covo_dir, speech_wav)
    yield base
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def locked_server(tiny_csm_dir, tiny_covo_dir, speech_wav):
    process, base = start_server(tiny_csm_dir, tiny_covo_dir, speech_wav, "--api-key", "sesame-open")
    yield base
    process.terminate()
    process.wait(timeout=30)


def wav_samples(data: bytes) -> tuple[np.ndarray, int]:
    return sf.read(io.BytesIO(data), dtype="float32")


def audio_b64(path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def test_health_models_metrics(server):
    assert httpx.get(f"{server}/health").json() == {"status": "ok", "models": ["chat", "tts"]}
    models = httpx.get(f"{server}/v1/models").json()
    assert {entry["id"]: entry["family"] for entry in models["data"]} == {"tts": "csm", "chat": "covo"}
    metrics = httpx.get(f"{server}/metrics").text
    assert 'voxport_requests_total{endpoint="/health",status="200"}' in metrics
    assert 'voxport_queue_depth{model="tts"}' in metrics and "voxport_request_seconds_bucket" in metrics


@pytest.mark.parametrize("response_format", ["wav", "flac", "mp3", "opus"])
def test_speech_formats(server, response_format):
    reply = httpx.post(f"{server}/v1/audio/speech", timeout=120, json={
        "model": "tts", "input": "Hello over HTTP.", "voice": "1", "response_format": response_format,
        "max_seconds": 0.4, "seed": 3})
    assert reply.status_code == 200, reply.text
    samples, rate = wav_samples(reply.content)
    assert rate == 24000 and abs(len(samples) - 5 * 1920) <= 2000 and np.abs(samples).max() > 0


def test_speech_pcm_and_named_voice(server):
    body = {"model": "tts", "input": "Raw samples.", "voice": "narrator", "response_format": "pcm",
            "max_seconds": 0.4, "temperature": 0}
    first = httpx.post(f"{server}/v1/audio/speech", json=body, timeout=120)
    second = httpx.post(f"{server}/v1/audio/speech", json=body, timeout=120)
    assert first.status_code == 200 and first.headers["content-type"] == "audio/pcm"
    assert len(first.content) == 5 * 1920 * 2 and first.content == second.content  # greedy: the same audio


def test_streaming_chunks_arrive_before_the_end(server):
    arrivals, data = [], b""
    start = time.monotonic()
    with httpx.stream("POST", f"{server}/v1/audio/speech", timeout=120, json={
            "model": "tts", "input": "A streamed answer, long enough to arrive in pieces.", "stream": True,
            "response_format": "wav", "max_seconds": 3.2, "seed": 1}) as reply:
        assert reply.status_code == 200
        for piece in reply.iter_raw():
            arrivals.append(time.monotonic() - start)
            data += piece
    assert data[:4] == b"RIFF" and len(data) == 44 + 40 * 1920 * 2
    assert len(arrivals) >= 3 and arrivals[0] < arrivals[-1] / 2  # audio came while frames were still made


def test_sixteen_concurrent_requests(server):
    results = [None] * 16

    def ask(index):
        results[index] = httpx.post(f"{server}/v1/audio/speech", timeout=300, json={
            "model": "tts", "input": f"Request number {index}.", "max_seconds": 0.32, "seed": index % 3})

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(reply.status_code == 200 for reply in results), [r.text for r in results if r.status_code != 200]
    assert all(len(wav_samples(reply.content)[0]) == 4 * 1920 for reply in results)


def test_chat_text_and_spoken(server, speech_clips):
    clip = audio_b64(speech_clips[1])
    user = {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": clip, "format": "wav"}}]}
    text = httpx.post(f"{server}/v1/chat/completions", timeout=120, json={
        "model": "chat", "messages": [user], "max_tokens": 8, "temperature": 0}).json()
    assert text["object"] == "chat.completion" and text["choices"][0]["message"]["role"] == "assistant"
    assert "audio" not in text["choices"][0]["message"] and text["usage"]["completion_tokens"] == 8
    spoken = httpx.post(f"{server}/v1/chat/completions", timeout=120, json={
        "model": "chat", "modalities": ["text", "audio"], "audio": {"voice": "default", "format": "wav"},
        "messages": [user, {"role": "assistant", "content": "Hello."}, user], "max_tokens": 24, "seed": 2}).json()
    message = spoken["choices"][0]["message"]
    samples, rate = wav_samples(base64.b64decode(message["audio"]["data"]))
    assert rate == 24000 and len(samples) > 0 and message["audio"]["transcript"] == message["content"]
    assert spoken["usage"]["prompt_tokens"] > text["usage"]["prompt_tokens"]  # the history was replayed


def bad_requests(speech_clips):
    clip = audio_b64(speech_clips[1])
    audio_turn = {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": clip}}]}
    return {
        "bad json": ("/v1/audio/speech", b"{not json", 400, "not valid JSON"),
        "empty input": ("/v1/audio/speech", {"model": "tts", "input": "  "}, 400, "input is empty"),
        "unknown model": ("/v1/audio/speech", {"model": "tts-9", "input": "hi"}, 404, "is not served here"),
        "unknown voice": ("/v1/audio/speech", {"model": "tts", "input": "hi", "voice": "nobody"}, 400, "unknown voice"),
        "bad format": ("/v1/audio/speech", {"model": "tts", "input": "hi", "response_format": "aac"}, 400,
                       "response_format 'aac'"),
        "unknown field": ("/v1/audio/speech", {"model": "tts", "input": "hi", "streaming": True}, 400,
                          "unknown field streaming"),
        "too long": ("/v1/audio/speech", {"model": "tts", "input": "hi", "max_seconds": 600}, 400, "max_seconds"),
        "wrong endpoint": ("/v1/audio/speech", {"model": "chat", "input": "hi"}, 400, "does not serve this endpoint"),
        "bad base64": ("/v1/chat/completions", {"model": "chat", "messages": [
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "@@@"}}]}]}, 400,
            "not valid base64"),
        "not audio": ("/v1/chat/completions", {"model": "chat", "messages": [
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {
                "data": base64.b64encode(b"plain text").decode()}}]}]}, 400, "is not audio"),
        "typed text": ("/v1/chat/completions", {"model": "chat", "messages": [
            {"role": "user", "content": "Hello?"}]}, 400, "exactly one input_audio part"),
        "ends with reply": ("/v1/chat/completions", {"model": "chat", "messages": [
            audio_turn, {"role": "assistant", "content": "Hi."}]}, 400, "must end with a user message"),
        "missing field": ("/v1/chat/completions", {"model": "chat"}, 400, "messages"),
    }


def test_bad_input_is_an_openai_error_and_the_server_keeps_serving(server, speech_clips):
    for name, (path, body, status, message) in bad_requests(speech_clips).items():
        if isinstance(body, bytes):
            reply = httpx.post(f"{server}{path}", content=body, headers={"content-type": "application/json"})
        else:
            reply = httpx.post(f"{server}{path}", json=body, timeout=60)
        assert reply.status_code == status, (name, reply.text)
        error = reply.json()["error"]
        assert message in error["message"] and error["type"] == "invalid_request_error", name
    assert httpx.get(f"{server}/health").status_code == 200
    again = httpx.post(f"{server}/v1/audio/speech", json={"model": "tts", "input": "Still here.", "max_seconds": 0.16},
                       timeout=60)
    assert again.status_code == 200


def test_api_key(locked_server):
    assert httpx.get(f"{locked_server}/health").status_code == 200  # health stays open for probes
    assert httpx.get(f"{locked_server}/v1/models").status_code == 401
    wrong = httpx.get(f"{locked_server}/v1/models", headers={"Authorization": "Bearer guess"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    right = httpx.post(f"{locked_server}/v1/audio/speech", headers={"Authorization": "Bearer sesame-open"},
                       json={"model": "tts", "input": "Authorised.", "max_seconds": 0.16}, timeout=60)
    assert right.status_code == 200


def test_full_queue_is_429_with_retry_after(tiny_csm):
    worker = ModelWorker("tts", lambda jobs: None, max_queue=0)
    app = create_app(ServerState(models={"tts": ServedModel("tts", "csm", tiny_csm, worker)}))
    reply = TestClient(app).post("/v1/audio/speech", json={"model": "tts", "input": "Busy?"})
    assert reply.status_code == 429 and reply.headers["retry-after"] == "2"
    assert reply.json()["error"]["type"] == "rate_limit_error"


class LeavingClient(SimpleQueue):
    """A stream's chunk queue whose client disconnects as soon as the first chunk arrives."""

    def __init__(self, job_holder):
        self.job_holder = job_holder

    def put(self, item, block=True, timeout=None):
        super().put(item, block, timeout)
        self.job_holder[0].cancelled.set()


def test_a_cancelled_stream_stops_generating(tiny_csm):
    holder = []
    job = Job(SpeechJob(SpeechSpec(text="Stop me.", max_seconds=5.12, seed=0), cap_seconds=5.12, streamed=True,
                        chunks=1), chunks=LeavingClient(holder))
    holder.append(job)
    run_speech(tiny_csm, [job])
    pieces = []
    while (piece := job.chunks.get()) is not None:
        pieces.append(piece.spoken.audio)
    assert len(pieces) == 1 and len(pieces[0]) == 2 * 1920  # one 2-frame chunk, not 64 frames


def test_cancelled_queued_jobs_are_skipped():
    ran = []
    gate = threading.Event()
    worker = ModelWorker("m", lambda jobs: (gate.wait(5), ran.extend(jobs), [j.future.set_result(1) for j in jobs]),
                         max_queue=4)
    first, second = worker.submit(Job("first")), worker.submit(Job("second"))
    second.cancelled.set()
    third = worker.submit(Job("third"))
    gate.set()
    third.future.result(timeout=10)
    assert [job.payload for job in ran] == ["first", "third"] and first.future.result() == 1
