"""The HTTP server: a real uvicorn process on loopback with tiny checkpoints, a real HTTP client."""

import base64
import io
import json
import threading
import time
from queue import SimpleQueue

import httpx
import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from serving import Server
from voxport.serve.app import Limits, ServedModel, ServerState, create_app
from voxport.serve.speech import SpeechJob, run_speech
from voxport.serve.workers import Job, JobCancelled, ModelWorker
from voxport.services.chat import ChatService
from voxport.services.speech import SpeechRequest, SpeechService


@pytest.fixture(scope="module")
def server(live_server):
    return live_server.base


@pytest.fixture(scope="module")
def locked_server(tiny_csm_dir):
    process = Server("--model", f"tts={tiny_csm_dir}", "--api-key", "sesame-open")
    yield process.base
    process.stop()


def wav_samples(data: bytes) -> tuple[np.ndarray, int]:
    return sf.read(io.BytesIO(data), dtype="float32")


def test_health_models_metrics(server):
    assert httpx.get(f"{server}/health").json() == {"status": "ok", "models": ["chat", "tts"]}
    models = httpx.get(f"{server}/v1/models").json()
    assert {entry["id"]: entry["family"] for entry in models["data"]} == {"tts": "csm", "chat": "covo"}
    metrics = httpx.get(f"{server}/metrics").text
    assert 'voxport_requests_total{endpoint="/health",status="200"}' in metrics
    assert 'voxport_queue_depth{model="tts"}' in metrics and "voxport_request_seconds_bucket" in metrics
    httpx.get(f"{server}/v1/no/such/path/7")
    metrics = httpx.get(f"{server}/metrics").text
    assert 'endpoint="unmatched",status="404"' in metrics and "/v1/no/such" not in metrics  # labels stay bounded


@pytest.mark.parametrize("response_format", ["wav", "flac", "mp3", "opus"])
def test_speech_formats(server, response_format):
    reply = httpx.post(
        f"{server}/v1/audio/speech",
        timeout=120,
        json={
            "model": "tts",
            "input": "Hello over HTTP.",
            "voice": "1",
            "response_format": response_format,
            "max_seconds": 0.4,
            "seed": 3,
        },
    )
    assert reply.status_code == 200, reply.text
    samples, rate = wav_samples(reply.content)
    assert rate == 24000 and abs(len(samples) - 5 * 1920) <= 2000 and np.abs(samples).max() > 0


def test_speech_pcm_and_named_voice(server):
    body = {
        "model": "tts",
        "input": "Raw samples.",
        "voice": "narrator",
        "response_format": "pcm",
        "max_seconds": 0.4,
        "temperature": 0,
    }
    first = httpx.post(f"{server}/v1/audio/speech", json=body, timeout=120)
    second = httpx.post(f"{server}/v1/audio/speech", json=body, timeout=120)
    assert first.status_code == 200 and first.headers["content-type"] == "audio/pcm"
    assert len(first.content) == 5 * 1920 * 2 and first.content == second.content  # greedy: the same audio


def test_streaming_chunks_arrive_before_the_end(server):
    arrivals, data = [], b""
    start = time.monotonic()
    body = {
        "model": "tts",
        "input": "A streamed answer, long enough to arrive in pieces.",
        "max_seconds": 3.2,
        "temperature": 0,
    }
    with httpx.stream(
        "POST", f"{server}/v1/audio/speech", timeout=120, json={**body, "stream": True, "response_format": "wav"}
    ) as reply:
        assert reply.status_code == 200
        for piece in reply.iter_raw():
            arrivals.append(time.monotonic() - start)
            data += piece
    assert len(arrivals) >= 3 and arrivals[0] < arrivals[-1] / 2  # audio came while frames were still made
    whole = httpx.post(f"{server}/v1/audio/speech", timeout=120, json={**body, "response_format": "pcm"})
    assert data[:4] == b"RIFF" and data[40:44] == b"\xff\xff\xff\xff"  # a streaming header: length unknown
    streamed = np.frombuffer(data[44:], dtype="<i2").astype(np.float32) / 32767
    expected = np.frombuffer(whole.content, dtype="<i2").astype(np.float32) / 32767
    assert len(streamed) == len(expected) == 40 * 1920 and np.abs(expected).max() > 0.01
    np.testing.assert_allclose(streamed, expected, atol=2e-3)  # the stream's chunks join into the whole audio


def test_sixteen_concurrent_requests_are_batched(server, live_server):
    batches = live_server.metric("voxport_batch_size_count", model="tts")
    batched_jobs = live_server.metric("voxport_batch_size_sum", model="tts")
    results = [None] * 16

    def ask(index):
        results[index] = httpx.post(
            f"{server}/v1/audio/speech",
            timeout=300,
            json={"model": "tts", "input": f"Request number {index}.", "max_seconds": 0.32, "seed": index % 3},
        )

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(reply.status_code == 200 for reply in results), [r.text for r in results if r.status_code != 200]
    assert all(len(wav_samples(reply.content)[0]) == 4 * 1920 for reply in results)
    assert live_server.metric("voxport_batch_size_sum", model="tts") - batched_jobs == 16
    assert live_server.metric("voxport_batch_size_count", model="tts") - batches < 16  # some ran together


def test_chat_text_and_spoken(server, voice_clip_b64):
    clip = voice_clip_b64
    user = {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": clip, "format": "wav"}}]}
    text = httpx.post(
        f"{server}/v1/chat/completions",
        timeout=120,
        json={"model": "chat", "messages": [user], "max_tokens": 8, "temperature": 0},
    ).json()
    assert text["object"] == "chat.completion" and text["choices"][0]["message"]["role"] == "assistant"
    assert "audio" not in text["choices"][0]["message"] and text["usage"]["completion_tokens"] == 8
    spoken = httpx.post(
        f"{server}/v1/chat/completions",
        timeout=120,
        json={
            "model": "chat",
            "modalities": ["text", "audio"],
            "audio": {"voice": "default", "format": "wav"},
            "messages": [user, {"role": "assistant", "content": "Hello."}, user],
            "max_tokens": 24,
            "seed": 2,
        },
    ).json()
    message = spoken["choices"][0]["message"]
    samples, rate = wav_samples(base64.b64decode(message["audio"]["data"]))
    assert rate == 24000 and np.abs(samples).max() > 0 and message["audio"]["transcript"] == message["content"]
    assert spoken["usage"]["prompt_tokens"] > text["usage"]["prompt_tokens"]  # the history was replayed


def wav_b64(samples: np.ndarray, rate: int = 24000) -> str:
    buffer = io.BytesIO()
    sf.write(buffer, samples.astype(np.float32), rate, format="WAV", subtype="FLOAT")
    return base64.b64encode(buffer.getvalue()).decode()


def chat_with_audio(data: str) -> dict:
    return {
        "model": "chat",
        "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": data}}]}],
    }


def bad_requests(clip):
    audio_turn = {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": clip}}]}
    chat = {"model": "chat", "messages": [audio_turn]}
    tone = 0.3 * np.sin(np.arange(24000) / 24000 * 2 * np.pi * 220)
    with_nan, with_inf = tone.copy(), tone.copy()
    with_nan[100:110], with_inf[5] = np.nan, np.inf
    whole = base64.b64decode(clip)
    return {
        "NaN audio": (
            "/v1/chat/completions",
            chat_with_audio(wav_b64(with_nan)),
            400,
            "messages[0].content[0].input_audio.data has 10 non-finite samples",
        ),
        "infinite audio": ("/v1/chat/completions", chat_with_audio(wav_b64(with_inf)), 400, "1 non-finite samples"),
        "truncated WAV": (
            "/v1/chat/completions",
            chat_with_audio(base64.b64encode(whole[: len(whole) // 2]).decode()),
            400,
            "input_audio.data is truncated: its header promises",
        ),
        "10 ms of audio": ("/v1/chat/completions", chat_with_audio(wav_b64(tone[:240])), 400, "lasts 10 ms"),
        "silent audio": ("/v1/chat/completions", chat_with_audio(wav_b64(np.zeros(24000))), 400, "is silent"),
        "bad json": ("/v1/audio/speech", b"{not json", 400, "not valid JSON"),
        "empty input": ("/v1/audio/speech", {"model": "tts", "input": "  "}, 400, "input is empty"),
        "unknown model": ("/v1/audio/speech", {"model": "tts-9", "input": "hi"}, 404, "is not served here"),
        "unknown voice": ("/v1/audio/speech", {"model": "tts", "input": "hi", "voice": "nobody"}, 400, "unknown voice"),
        "bad format": (
            "/v1/audio/speech",
            {"model": "tts", "input": "hi", "response_format": "aac"},
            400,
            "response_format 'aac'",
        ),
        "unknown field": (
            "/v1/audio/speech",
            {"model": "tts", "input": "hi", "streaming": True},
            400,
            "unknown field streaming",
        ),
        "too long": ("/v1/audio/speech", {"model": "tts", "input": "hi", "max_seconds": 600}, 400, "max_seconds"),
        "wrong endpoint": ("/v1/audio/speech", {"model": "chat", "input": "hi"}, 400, "does not serve this endpoint"),
        "bad base64": (
            "/v1/chat/completions",
            {
                "model": "chat",
                "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "@@@"}}]}],
            },
            400,
            "not valid base64",
        ),
        "not audio": (
            "/v1/chat/completions",
            {
                "model": "chat",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_audio", "input_audio": {"data": base64.b64encode(b"plain text").decode()}}
                        ],
                    }
                ],
            },
            400,
            "is not audio",
        ),
        "typed text": (
            "/v1/chat/completions",
            {"model": "chat", "messages": [{"role": "user", "content": "Hello?"}]},
            400,
            "exactly one input_audio part",
        ),
        "ends with reply": (
            "/v1/chat/completions",
            {"model": "chat", "messages": [audio_turn, {"role": "assistant", "content": "Hi."}]},
            400,
            "must end with a user message",
        ),
        "missing field": ("/v1/chat/completions", {"model": "chat"}, 400, "messages"),
        "no body": ("/v1/chat/completions", b"", 400, "the request body is missing: expected a JSON object"),
        "a list for a body": ("/v1/chat/completions", [{"model": "chat"}], 400, "must be a JSON object"),
        "input_audio a string": (
            "/v1/chat/completions",
            {
                "model": "chat",
                "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": clip}]}],
            },
            400,
            "messages[0].content[0].input_audio: Input should be a valid dictionary",
        ),
        "data a number": (
            "/v1/chat/completions",
            {
                "model": "chat",
                "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": 12}}]}],
            },
            400,
            "messages[0].content[0].input_audio.data: Input should be a valid string",
        ),
        "content a number": (
            "/v1/chat/completions",
            {"model": "chat", "messages": [{"role": "user", "content": 3}]},
            400,
            "messages[0].content: expected a string or a list of content parts",
        ),
        "messages an object": (
            "/v1/chat/completions",
            {"model": "chat", "messages": {"role": "user"}},
            400,
            "messages: Input should be a valid list",
        ),
        "unknown role": (
            "/v1/chat/completions",
            {"model": "chat", "messages": [{"role": "robot", "content": "x"}]},
            400,
            "messages[0]: expected an object whose role is system or developer or user",
        ),
        "unknown part": (
            "/v1/chat/completions",
            {
                "model": "chat",
                "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
            },
            400,
            "messages[0].content[0]: expected an object whose type is input_audio or text",
        ),
        "max_tokens 0": ("/v1/chat/completions", {**chat, "max_tokens": 0}, 400, "max_tokens: Input should be greater"),
        "max_tokens negative": (
            "/v1/chat/completions",
            {**chat, "max_completion_tokens": -5},
            400,
            "max_completion_tokens: Input should be greater",
        ),
        "max_tokens text": ("/v1/chat/completions", {**chat, "max_tokens": "many"}, 400, "max_tokens: Input should"),
        "temperature NaN": (
            "/v1/chat/completions",
            json.dumps({**chat, "temperature": float("nan")}).encode(),
            400,
            "temperature: Input should be a finite number",
        ),
        "seed too big": ("/v1/chat/completions", {**chat, "seed": 2**70}, 400, "seed: Input should be less than"),
        "speech seed too big": (
            "/v1/audio/speech",
            {"model": "tts", "input": "hi", "seed": 2**70},
            400,
            "seed: Input should be less than",
        ),
        "speech temperature NaN": (
            "/v1/audio/speech",
            b'{"model": "tts", "input": "hi", "temperature": NaN}',
            400,
            "temperature: Input should be a finite number",
        ),
        "speech input a number": (
            "/v1/audio/speech",
            {"model": "tts", "input": 5},
            400,
            "input: Input should be a valid string",
        ),
        "unknown fields": (
            "/v1/chat/completions",
            {**chat, "max_tokns": 3, "tempreature": 1},
            400,
            "unknown fields 'max_tokns', 'tempreature'",
        ),
        "unknown nested field": (
            "/v1/chat/completions",
            {**chat, "audio": {"voice": "alloy", "speed": 2}},
            400,
            "unknown field 'audio.speed'",
        ),
        "n of 2": ("/v1/chat/completions", {**chat, "n": 2}, 400, "n: Input should be 1"),
        "modalities audio only": (
            "/v1/chat/completions",
            {**chat, "modalities": ["audio"]},
            400,
            'modalities must be ["text"] or ["text", "audio"]',
        ),
        "unknown chat voice": (
            "/v1/chat/completions",
            {**chat, "modalities": ["text", "audio"], "audio": {"voice": "x"}},
            400,
            "audio.voice 'x' is unknown",
        ),
        "unknown audio id": (
            "/v1/chat/completions",
            {
                "model": "chat",
                "messages": [audio_turn, {"role": "assistant", "audio": {"id": "audio_gone"}}, audio_turn],
            },
            400,
            "messages[1].audio.id 'audio_gone' is unknown or has expired",
        ),
        "late system message": (
            "/v1/chat/completions",
            {
                "model": "chat",
                "messages": [
                    audio_turn,
                    {"role": "assistant", "content": "Hi."},
                    {"role": "system", "content": "Be brief."},
                    audio_turn,
                ],
            },
            400,
            "messages[2]: a system message must come before the first user turn",
        ),
        "empty system message": (
            "/v1/chat/completions",
            {"model": "chat", "messages": [{"role": "system", "content": " "}, audio_turn]},
            400,
            "the system prompt is empty",
        ),
    }


def test_bad_input_is_an_openai_error_and_the_server_keeps_serving(server, voice_clip_b64):
    for name, (path, body, status, message) in bad_requests(voice_clip_b64).items():
        if isinstance(body, bytes):
            reply = httpx.post(
                f"{server}{path}", content=body, headers={"content-type": "application/json"}, timeout=60
            )
        else:
            reply = httpx.post(f"{server}{path}", json=body, timeout=60)
        assert reply.status_code == status, (name, reply.text)
        error = reply.json()["error"]
        assert message in error["message"] and error["type"] == "invalid_request_error", (name, error)
    assert httpx.get(f"{server}/health").status_code == 200
    again = httpx.post(
        f"{server}/v1/audio/speech", json={"model": "tts", "input": "Still here.", "max_seconds": 0.16}, timeout=60
    )
    assert again.status_code == 200


def test_api_key(locked_server):
    assert httpx.get(f"{locked_server}/health").status_code == 200  # health stays open for probes
    assert httpx.get(f"{locked_server}/v1/models").status_code == 401
    wrong = httpx.get(f"{locked_server}/v1/models", headers={"Authorization": "Bearer guess"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    right = httpx.post(
        f"{locked_server}/v1/audio/speech",
        headers={"Authorization": "Bearer sesame-open"},
        json={"model": "tts", "input": "Authorised.", "max_seconds": 0.16},
        timeout=60,
    )
    assert right.status_code == 200


def test_full_queue_is_429_with_retry_after(tiny_csm):
    worker = ModelWorker("tts", lambda jobs: None, max_queue=0)
    app = create_app(ServerState(models={"tts": ServedModel("tts", "csm", SpeechService(tiny_csm), worker)}))
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
    service = SpeechService(tiny_csm)
    job = Job(
        SpeechJob(service.plan(SpeechRequest("Stop me.", max_seconds=5.12, seed=0)), streamed=True),
        chunks=LeavingClient(holder),
    )
    holder.append(job)
    with pytest.raises(JobCancelled):
        run_speech(service, [job])
    pieces = []
    while not job.chunks.empty():
        pieces.append(job.chunks.get().spoken.audio)
    assert len(pieces) == 1 and len(pieces[0]) == 2 * 1920  # one 2-frame chunk, not 64 frames
    assert job.steps == 2 + 8  # stopped at the boundary after the next chunk, not after 64 frames


def test_cancelled_queued_jobs_are_skipped():
    ran = []
    gate = threading.Event()
    worker = ModelWorker(
        "m", lambda jobs: (gate.wait(5), ran.extend(jobs), [j.future.set_result(1) for j in jobs]), max_queue=4
    )
    first, second = worker.submit(Job("first")), worker.submit(Job("second"))
    second.cancelled.set()
    third = worker.submit(Job("third"))
    gate.set()
    third.future.result(timeout=10)
    assert [job.payload for job in ran] == ["first", "third"] and first.future.result() == 1


def test_the_audio_limit_counts_every_turn_of_a_request(voice_clip_b64, tiny_covo):
    one_clip = len(base64.b64decode(voice_clip_b64))
    worker = ModelWorker("chat", lambda jobs: None, max_queue=4)
    listener = ChatService(tiny_covo)  # its worker never runs: the request is refused before
    state = ServerState(
        models={"chat": ServedModel("chat", "covo", listener, worker)}, limits=Limits(max_audio_bytes=one_clip + 10)
    )
    turn = {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": voice_clip_b64}}]}
    reply = TestClient(create_app(state)).post(
        "/v1/chat/completions",
        json={"model": "chat", "messages": [turn, {"role": "assistant", "content": "Hi."}, turn]},
    )
    assert reply.status_code == 413
    assert reply.json()["error"]["message"] == (
        f"messages[2].content[0].input_audio.data: with the turns before it, this request sends {2 * one_clip} "
        f"bytes of audio; the limit is {one_clip + 10} for all turns together"
    )
