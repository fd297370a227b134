"""`voxport serve --replicas 2`: the models as replicas on an embedded Ray Serve behind voxport's entry.

One replica server for the module (Ray starts slowly), restarted once, at the end, to show what it keeps. The
single-process server's own SDK tests of speech and chat run against it too (imported below), so both servers
answer the same requests the same way; the tests here cover what replicas add: routing to both, one voice and
reply store, a replica killed mid-stream, cancellation through Ray Serve, /health and /metrics per replica."""

import base64
import os
import signal
import subprocess
import sys
import time

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving import Server
from test_serve_chat import (  # noqa: F401  (the chat tests, run here against the replicas)
    first_reply,
    local_conversation,
    test_a_spoken_reply_is_the_models_reply,
    test_a_streamed_reply_is_the_whole_reply_in_pieces,
    test_a_text_stream_sends_text_as_it_is_made,
    test_an_audio_id_in_history_restores_the_models_own_speech,
    test_an_unknown_model_is_not_found,
    test_mistakes_are_bad_requests_the_sdk_reports,
    user_turn,
)
from test_serve_openai import (  # noqa: F401  (the speech tests, run here against the replicas)
    TINY,
    pcm,
    speak,
    test_a_compressed_format_streams_whole_at_the_end,
    test_alloy_whole_file,
    test_bad_requests_are_clear_400s,
    test_concurrent_requests_all_answer,
    test_long_text_is_spoken_whole_chunk_by_chunk,
    test_raw_audio_stream_and_sse_carry_the_same_audio,
    test_speed_changes_duration_not_pitch,
    test_the_same_seeded_request_alone_and_batched,
)
from test_serve_store import add_consent, add_voice
from voxport.serve.replicas import REPLICA_HEADER

LONG_TEXT = "A long stream that is still being spoken when its replica is killed. " * 4


@pytest.fixture(scope="module")
def voices_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("voices")


class Replicas:
    """The module's replica server, which the restart test replaces."""

    def __init__(self, *args: str):
        self.args = args
        self.server = Server(*args)

    def restart(self) -> None:
        self.server.stop()
        self.server = Server(*self.args)

    @property
    def base(self) -> str:
        return self.server.base


@pytest.fixture(scope="module")
def replicas(tiny_csm_dir, tiny_covo_dir, speech_wav, voices_dir):
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed (pip install 'voxport[serve]')")
    served = Replicas(
        "--model",
        f"tts={tiny_csm_dir}",
        "--model",
        f"chat={tiny_covo_dir}",
        "--replicas",
        "2",
        "--voice",
        f"narrator={speech_wav}:A short recorded line.",
        "--voices-dir",
        str(voices_dir),
        "--max-batch",
        "4",
    )
    yield served
    served.server.stop()


@pytest.fixture(scope="module")
def live_server(replicas):
    return replicas.server


@pytest.fixture(scope="module")
def sdk_server(replicas):
    return replicas.base


@pytest.fixture(scope="module")
def client(replicas):
    return openai.OpenAI(base_url=f"{replicas.base}/v1", api_key="unused", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def no_ray(tmp_path_factory) -> str:
    """A PYTHONPATH whose `ray` fails on import: a process under it shows it never needed Ray."""
    folder = tmp_path_factory.mktemp("no-ray")
    (folder / "ray").mkdir()
    (folder / "ray" / "__init__.py").write_text("raise ImportError('ray is not installed here')\n")
    return os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])


@pytest.fixture(scope="module")
def single_process(tiny_csm_dir, no_ray):
    """The single-process server, started where Ray cannot be imported: without --replicas it needs none."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", no_ray)
        server = Server("--model", f"tts={tiny_csm_dir}")
    yield server.base
    server.stop()


def test_replicas_without_ray_serve_is_one_line(tiny_csm_dir, no_ray):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "voxport",
            "serve",
            "--model",
            f"tts={tiny_csm_dir}",
            "--device",
            "cpu",
            "--port",
            "0",
            "--replicas",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": no_ray, "HF_HUB_OFFLINE": "1"},
    )
    assert run.returncode != 0
    assert run.stderr.splitlines() == [
        "voxport: error: Ray Serve is not installed (needed for --replicas and "
        "--cluster): pip install 'voxport[serve]' (or 'ray[serve]>=2.40')"
    ]


def answered_by_each(ask, tries: int = 12) -> dict[str, object]:
    """`ask()` (a response with headers, and what it carried) until both replicas have answered: by replica."""
    seen: dict[str, object] = {}
    for _ in range(tries):
        response, carried = ask()
        seen.setdefault(response.headers[REPLICA_HEADER], carried)
        if len(seen) == 2:
            break
    assert len(seen) == 2, f"one replica answered all {tries} requests: {list(seen)}"
    return seen


def seeded_speech(base: str, **options) -> httpx.Response:
    body = {"model": "tts", "voice": "alloy", "input": "Hello from the SDK.", "response_format": "pcm", **TINY}
    response = httpx.post(f"{base}/v1/audio/speech", json=body | options, timeout=300)
    assert response.status_code == 200, response.text
    return response


def replica_samples(base: str, name: str, **labels: str) -> dict[str, float]:
    """One metric's value per replica label, from the entry's /metrics."""
    found = {}
    for family in text_string_to_metric_families(httpx.get(f"{base}/metrics", timeout=30).text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(key) == value for key, value in labels.items()):
                found[sample.labels["replica"]] = found.get(sample.labels["replica"], 0.0) + sample.value
    return found


def test_the_sdk_is_answered_by_both_replicas_with_the_single_process_servers_audio(replicas, client, single_process):
    def ask():
        response = client.audio.speech.with_raw_response.create(
            model="tts", voice="alloy", input="Hello from the SDK.", response_format="pcm", extra_body=TINY
        )
        return response, response.content

    audio = answered_by_each(ask)
    single = seeded_speech(single_process).content
    assert all(carried == single for carried in audio.values())
    assert len(pcm(single)) > 0
    assert set(replica_samples(replicas.base, "voxport_generation_steps_total", model="tts")) >= set(audio)


def test_health_counts_the_replicas_of_each_model(replicas):
    health = httpx.get(f"{replicas.base}/health", timeout=30).json()
    assert health == {"status": "ok", "models": ["chat", "tts"], "replicas": {"chat": 2, "tts": 2}}


@pytest.fixture(scope="module")
def custom_voice(replicas, speech_wav):
    consent = add_consent(replicas.base)
    assert consent.status_code == 200, consent.text
    voice = add_voice(replicas.base, consent.json()["id"], sample=speech_wav.read_bytes())
    assert voice.status_code == 200, voice.text
    return voice.json()["id"]


def test_a_voice_made_through_the_entry_speaks_on_every_replica(replicas, custom_voice):
    audio = answered_by_each(
        lambda: (response := seeded_speech(replicas.base, voice={"id": custom_voice}), response.content)
    )
    first, second = audio.values()
    assert first == second != seeded_speech(replicas.base).content  # the voice's own sample, on both


@pytest.fixture(scope="module")
def spoken_reply(replicas, voice_clip_b64):
    turn = {
        "role": "user",
        "content": [{"type": "input_audio", "input_audio": {"data": voice_clip_b64, "format": "wav"}}],
    }
    body = {
        "model": "chat",
        "messages": [turn],
        "modalities": ["text", "audio"],
        "audio": {"voice": "alloy", "format": "wav"},
        "max_tokens": 8,
        "temperature": 0,
        "seed": 5,
    }
    response = httpx.post(f"{replicas.base}/v1/chat/completions", json=body, timeout=300)
    assert response.status_code == 200, response.text
    return body, response.json()["choices"][0]["message"]["audio"]["id"]


def continue_conversation(base: str, spoken_reply) -> httpx.Response:
    body, reply_id = spoken_reply
    turn = body["messages"][0]
    response = httpx.post(
        f"{base}/v1/chat/completions",
        timeout=300,
        json=body | {"messages": [turn, {"role": "assistant", "audio": {"id": reply_id}}, turn]},
    )
    assert response.status_code == 200, response.text
    return response


def test_an_audio_id_from_one_replica_continues_on_the_other(replicas, spoken_reply):
    replies = answered_by_each(
        lambda: (
            response := continue_conversation(replicas.base, spoken_reply),
            response.json()["choices"][0]["message"]["content"],
        )
    )
    first, second = replies.values()
    assert first == second


def test_a_client_that_leaves_a_stream_stops_its_job_on_the_replica(replicas):
    before = sum(replica_samples(replicas.base, "voxport_cancelled_jobs_total", model="tts").values())
    body = {"model": "tts", "input": LONG_TEXT, "stream_format": "audio", "response_format": "pcm", "max_seconds": 20}
    with httpx.stream("POST", f"{replicas.base}/v1/audio/speech", json=body, timeout=300) as response:
        assert response.status_code == 200
        next(response.iter_bytes())
    deadline = time.monotonic() + 60
    while sum(replica_samples(replicas.base, "voxport_cancelled_jobs_total", model="tts").values()) <= before:
        assert time.monotonic() < deadline, "the job went on after its client left"
        time.sleep(0.5)


def test_a_replica_killed_mid_stream_fails_that_stream_and_the_others_go_on(replicas):
    body = {"model": "tts", "input": LONG_TEXT, "stream_format": "audio", "response_format": "pcm", "max_seconds": 20}
    started = time.monotonic()
    with httpx.stream("POST", f"{replicas.base}/v1/audio/speech", json=body, timeout=120) as response:
        assert response.status_code == 200
        pieces = response.iter_bytes()
        next(pieces)
        os.kill(int(response.headers[REPLICA_HEADER].rsplit(":", 1)[1]), signal.SIGKILL)
        with pytest.raises(httpx.HTTPError):  # a cut transfer, never a clean end
            for _ in pieces:
                pass
    assert time.monotonic() - started < 120
    for _ in range(4):  # the live replica answers while the dead one is replaced
        response = httpx.post(
            f"{replicas.base}/v1/audio/speech",
            timeout=300,
            json={"model": "tts", "input": "After the loss.", "response_format": "pcm", **TINY},
        )
        assert response.status_code == 200, response.text
    deadline = time.monotonic() + 180
    while httpx.get(f"{replicas.base}/health", timeout=30).json()["replicas"]["tts"] < 2:
        assert time.monotonic() < deadline, "the killed replica was not replaced"
        time.sleep(1)


def test_voices_and_conversations_survive_a_restart_of_the_deployment(replicas, custom_voice, spoken_reply):
    voiced = seeded_speech(replicas.base, voice={"id": custom_voice}).content
    continued = continue_conversation(replicas.base, spoken_reply).json()["choices"][0]["message"]
    replicas.restart()
    assert seeded_speech(replicas.base, voice={"id": custom_voice}).content == voiced
    again = continue_conversation(replicas.base, spoken_reply).json()["choices"][0]["message"]
    assert again["content"] == continued["content"]
    assert base64.b64decode(again["audio"]["data"]) == base64.b64decode(continued["audio"]["data"])
