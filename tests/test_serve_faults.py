"""Faults over real HTTP: clients that leave (the generation must stop, seen in the server's metrics),
responses that fail half-way (the client must be able to tell), and a port that is taken."""

import json
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import httpx
import numpy as np
import openai
import pytest
import uvicorn

from voxport.models.base import SpokenAudio
from voxport.models.csm.synthesis import SPEECH_DEFAULTS
from voxport.serve.app import ServedModel, ServerState, create_app
from voxport.serve.server import bind
from voxport.serve.workers import ModelWorker
from voxport.services.chat import ChatService
from voxport.services.speech import SpeechPiece, SpeechService

LONG_CHAT_TOKENS = 3800  # the tiny Covo's context is 4096 positions
# One chunk of text whose speech budget (2 s + 0.12 s a character, about 300 frames) far outlasts the client
LONG_SENTENCE = (
    "Nobody will hear the end of this sentence because the client that asked for it leaves long before "
    "the model could possibly finish speaking all of these many words out loud in the tiny voice"
)
LONG_SENTENCE_FRAMES = SPEECH_DEFAULTS.budget_seconds(LONG_SENTENCE) / 0.08
CANCEL_WAIT_SECONDS = 120


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + CANCEL_WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def wait_for_start(server, model: str, batches_before: float) -> None:
    """Until the model's worker has started a batch since `batches_before`. A streamed reply's first bytes go
    out before its job runs, so a client that left on them could be skipped in the queue (another test's case)
    instead of stopped while running."""
    wait_until(
        lambda: server.metric("voxport_batch_size_count", model=model) > batches_before,
        f"the {model} job did not start",
    )


def wait_for_cancel(server, model: str, cancelled_before: float) -> None:
    wait_until(
        lambda: server.metric("voxport_cancelled_jobs_total", model=model, stage="running") > cancelled_before,
        f"the {model} job was not cancelled",
    )
    wait_until(lambda: server.metric("voxport_queue_depth", model=model) == 0, f"{model}'s queue did not empty")


@contextmanager
def counting(server, model: str):
    """Yields a dict that, after the block, holds the running jobs cancelled and the steps generated in it."""
    cancelled = server.metric("voxport_cancelled_jobs_total", model=model, stage="running")
    steps = server.metric("voxport_generation_steps_total", model=model)
    seen = {}
    yield seen
    wait_for_cancel(server, model, cancelled)
    seen["cancelled"] = server.metric("voxport_cancelled_jobs_total", model=model, stage="running") - cancelled
    seen["steps"] = server.metric("voxport_generation_steps_total", model=model) - steps


def chat_body(clip: str, **extra) -> dict:
    """A long reply with a fixed seed: an unseeded one could end on its own before the client leaves."""
    return {
        "model": "chat",
        "seed": 0,
        "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": clip}}]}],
        **extra,
    }


def test_a_whole_chat_reply_stops_when_its_client_leaves(live_server, voice_clip_b64):
    with counting(live_server, "chat") as seen:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                f"{live_server.base}/v1/chat/completions",
                json=chat_body(voice_clip_b64, max_tokens=LONG_CHAT_TOKENS),
                timeout=httpx.Timeout(60, read=3),
            )
    assert seen["cancelled"] == 1 and 0 < seen["steps"] < LONG_CHAT_TOKENS


def test_a_queued_chat_request_whose_client_left_is_skipped(live_server, voice_clip_b64):
    queued = live_server.metric("voxport_cancelled_jobs_total", model="chat", stage="queued")

    def leave_after(seconds: float) -> None:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                f"{live_server.base}/v1/chat/completions",
                json=chat_body(voice_clip_b64, max_tokens=LONG_CHAT_TOKENS),
                timeout=httpx.Timeout(60, read=seconds),
            )

    with counting(live_server, "chat") as seen:
        running = threading.Thread(target=leave_after, args=(1.5,))
        running.start()  # holds the worker until it leaves
        time.sleep(0.3)
        leave_after(0.7)  # waits behind it, and leaves first
        running.join()
    assert seen["cancelled"] == 1 and 0 < seen["steps"] < LONG_CHAT_TOKENS  # only the first one ran
    assert live_server.metric("voxport_cancelled_jobs_total", model="chat", stage="queued") == queued + 1
    assert live_server.metric("voxport_queue_depth", model="chat") == 0


def test_a_streamed_chat_reply_stops_when_its_client_leaves(live_server, voice_clip_b64):
    batches = live_server.metric("voxport_batch_size_count", model="chat")
    with counting(live_server, "chat") as seen:
        with httpx.stream(
            "POST",
            f"{live_server.base}/v1/chat/completions",
            timeout=60,
            json=chat_body(voice_clip_b64, max_tokens=LONG_CHAT_TOKENS, stream=True),
        ) as reply:
            lines = reply.iter_lines()  # held: a dropped iterator closes the connection, and the client leaves
            first = next(lines)
            assert json.loads(first.removeprefix("data: "))["object"] == "chat.completion.chunk"
            wait_for_start(live_server, "chat", batches)
    assert seen["cancelled"] == 1 and 0 < seen["steps"] < LONG_CHAT_TOKENS


def test_whole_speech_stops_when_its_client_leaves(live_server):
    with counting(live_server, "tts") as seen:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                f"{live_server.base}/v1/audio/speech",
                timeout=httpx.Timeout(60, read=0.5),
                json={"model": "tts", "input": LONG_SENTENCE},
            )
    assert seen["cancelled"] == 1 and 0 < seen["steps"] < LONG_SENTENCE_FRAMES


def test_streamed_speech_stops_when_its_client_leaves(live_server):
    batches = live_server.metric("voxport_batch_size_count", model="tts")
    with counting(live_server, "tts") as seen:
        with httpx.stream(
            "POST",
            f"{live_server.base}/v1/audio/speech",
            timeout=60,
            json={"model": "tts", "input": LONG_SENTENCE, "stream": True},
        ) as reply:
            pieces = reply.iter_raw()  # held: a dropped iterator closes the connection, and the client leaves
            assert next(pieces)[:4] == b"RIFF"
            wait_for_start(live_server, "tts", batches)
    assert seen["cancelled"] == 1 and 0 < seen["steps"] < LONG_SENTENCE_FRAMES


@contextmanager
def serving(state: ServerState):
    """The app on a loopback port in this process (uvicorn in a thread), for workers that fail on purpose."""
    listening = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(state), log_level="critical"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{listening.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def fails_after_one_piece(piece):
    def run(jobs):
        jobs[0].chunks.put(piece)
        raise RuntimeError("the device went away")

    return run


@pytest.fixture(scope="module")
def failing_server(tiny_csm, tiny_covo):
    models = {
        "tts": ServedModel(
            "tts",
            "csm",
            SpeechService(tiny_csm),
            ModelWorker(
                "tts",
                fails_after_one_piece(
                    SpeechPiece(0, 1, "Cut short.", SpokenAudio(np.full(1920, 0.1, np.float32), 24000, 1))
                ),
                4,
            ),
        ),
        "chat": ServedModel(
            "chat", "covo", ChatService(tiny_covo), ModelWorker("chat", fails_after_one_piece("Hel"), 4)
        ),
    }
    with serving(ServerState(models=models)) as base:
        yield base


@pytest.mark.parametrize("response_format", ["wav", "pcm"])
def test_raw_audio_that_fails_half_way_is_an_aborted_transfer(failing_server, response_format):
    received = b""
    with httpx.stream(
        "POST",
        f"{failing_server}/v1/audio/speech",
        timeout=60,
        json={"model": "tts", "input": "Cut short.", "stream": True, "response_format": response_format},
    ) as reply:
        assert reply.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
            for piece in reply.iter_raw():
                received += piece
    assert len(received) == (44 if response_format == "wav" else 0) + 1920 * 2  # what was made did arrive


def test_a_chat_stream_that_fails_half_way_ends_with_an_error_event(failing_server, voice_clip_b64):
    client = openai.OpenAI(base_url=f"{failing_server}/v1", api_key="unused", max_retries=0)
    stream = client.chat.completions.create(**chat_body(voice_clip_b64, max_tokens=8, stream=True))
    text = ""
    with pytest.raises(openai.APIError, match="the reply failed half-way: RuntimeError: the device went away"):
        for chunk in stream:
            text += chunk.choices[0].delta.content or ""
    assert text == "Hel"


def test_a_busy_port_fails_before_any_model_loads(tiny_csm_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "voxport",
                "serve",
                "--model",
                str(tiny_csm_dir),
                "--port",
                str(port),
                "--device",
                "cpu",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"voxport: error: cannot listen on 127.0.0.1:{port}: Address already in use (is another server using it? "
        "pick another --port, or 0 for a free one)"
    ]  # one line, and no "loading ..." before it
