"""The speech socket (ElevenLabs' stream-input convention): a real `voxport serve` on loopback, a real WebSocket
client. Text streamed in word by word gives /v1/audio/speech's audio for the whole text, byte for byte, and the
first audio comes before the text is finished."""

from __future__ import annotations

import base64
import json
import re
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from serving import API_KEY, Server

KEY = API_KEY
AUTH = {"Authorization": f"Bearer {KEY}"}
WAIT = 120  # seconds any one wait may take before the test fails
LINE = "Hello there, streamed word by word."
PARAGRAPH = (
    "The committee met on Dec. 5 at 10:30 am to review the budget for the coming year. Dr. Smith said the cost "
    "rose 12% to $5 million. No. 7 on the list was the new road: it runs 25 km, from the old mill to the harbour. "
    "Everyone agreed, after a long talk, that the plan should go ahead in 2026. The next meeting will be in spring. "
    "Thank you all for coming."
)
ROUTE = "/v1/text-to-speech/{voice_id}/stream-input"  # the metrics' endpoint label
SETTINGS = "model_id=tts&output_format=pcm_24000&seed=7&max_seconds=0.16"


@pytest.fixture(scope="module")
def server(tiny_csm_dir):
    process = Server("--model", f"tts={tiny_csm_dir}", "--api-key", KEY, "--max-input-chars", "600")
    yield process
    process.stop()


def open_socket(server: Server, query: str = SETTINGS, voice: str = "alloy", headers=None) -> ClientConnection:
    url = server.base.replace("http://", "ws://") + f"/v1/text-to-speech/{voice}/stream-input?{query}"
    return connect(url, additional_headers=AUTH if headers is None else headers, open_timeout=WAIT)


def receive(socket: ClientConnection, timeout: float = WAIT) -> dict:
    return json.loads(socket.recv(timeout=timeout))


def rest_of_audio(socket: ClientConnection) -> bytes:
    """Audio messages until {"isFinal": true}; the socket then closes normally."""
    audio = b""
    while not (message := receive(socket)).get("isFinal"):
        assert message["isFinal"] is False and set(message) == {"audio", "isFinal", "normalizedAlignment", "alignment"}
        audio += base64.b64decode(message["audio"])
    with pytest.raises(ConnectionClosed) as closed:
        socket.recv(timeout=WAIT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    return audio


def whole_text_audio(server: Server, text: str) -> bytes:
    reply = httpx.post(
        f"{server.base}/v1/audio/speech",
        headers=AUTH,
        timeout=WAIT,
        json={"model": "tts", "input": text, "voice": "alloy", "seed": 7, "max_seconds": 0.16}
        | {"response_format": "pcm"},
    )
    assert reply.status_code == 200, reply.text
    return reply.content


def metric(server: Server, name: str, **labels: str) -> float:
    """The samples of `name` with these labels from /metrics, added up, read with the key."""
    text = httpx.get(f"{server.base}/metrics", headers=AUTH, timeout=30).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(key) == value for key, value in labels.items())
    )


def words(text: str) -> list[str]:
    return re.findall(r"\S+\s*", text)


@pytest.mark.parametrize("text", [LINE, PARAGRAPH], ids=["line", "paragraph"])
def test_streamed_words_give_the_whole_texts_audio(server, text):
    with open_socket(server) as socket:
        socket.send(json.dumps({"text": " ", "generation_config": {"chunk_length_schedule": [120, 160]}}))
        for word in words(text):
            socket.send(json.dumps({"text": word}))
        socket.send(json.dumps({"text": ""}))
        streamed = rest_of_audio(socket)
    assert len(streamed) > 0 and streamed == whole_text_audio(server, text)
    assert metric(server, "voxport_requests_total", endpoint=ROUTE, status="1000") > 0


def test_first_audio_comes_before_the_text_is_finished(server):
    """The last word is held back until audio has come: a server that waited for the end would time out here."""
    pieces = words(PARAGRAPH)
    audio = b""
    with open_socket(server) as socket:
        socket.send(json.dumps({"text": " "}))
        for word in pieces[:-1]:
            socket.send(json.dumps({"text": word}))
        message = receive(socket)  # input still open: the last word is not sent yet
        assert "audio" in message and message["isFinal"] is False
        audio += base64.b64decode(message["audio"])
        socket.send(json.dumps({"text": pieces[-1]}))
        socket.send(json.dumps({"text": ""}))
        audio += rest_of_audio(socket)
    assert audio == whole_text_audio(server, PARAGRAPH)


def test_flush_speaks_a_partial_clause_now(server):
    with open_socket(server) as socket:
        socket.send(json.dumps({"text": " "}))
        socket.send(json.dumps({"text": "Half a clause, "}))
        with pytest.raises(TimeoutError):
            socket.recv(timeout=2)  # nothing is sure yet: no audio
        socket.send(json.dumps({"flush": True}))
        assert "audio" in receive(socket)  # the flush spoke it, with the input still open
        socket.send(json.dumps({"text": "and the rest of it."}))
        socket.send(json.dumps({"text": ""}))
        assert rest_of_audio(socket) is not None


def test_mistakes_in_messages_are_told_and_the_socket_goes_on(server):
    with open_socket(server) as socket:
        socket.send(json.dumps({"text": " "}))
        socket.send("{not json")
        assert receive(socket) == {
            "message": 'the message is not valid JSON: expected an object such as {"text": "Hello "}',
            "error": "invalid_input_message",
            "code": 1008,
        }
        socket.send(json.dumps({"text": "Hi ", "speed": 2}))
        told = receive(socket)
        assert told["error"] == "invalid_input_message" and "unknown field speed" in told["message"]
        socket.send(json.dumps({"text": 5}))
        assert receive(socket)["error"] == "invalid_input_message"
        socket.send(b"\x00binary")
        assert receive(socket)["error"] == "invalid_input_message"
        socket.send(json.dumps({"text": "x" * 700}))
        told = receive(socket)
        assert told["error"] == "input_too_long" and "limit is 600" in told["message"]
        socket.send(json.dumps({"text": "Still here. "}))
        socket.send(json.dumps({"text": ""}))
        assert len(rest_of_audio(socket)) > 0
    deadline = time.monotonic() + 10  # replicas post their metrics every second
    while metric(server, "voxport_errors_total", endpoint=ROUTE) < 5:
        assert time.monotonic() < deadline, "the mistakes were not counted"
        time.sleep(0.2)


@pytest.mark.parametrize(
    "query, headers, told",
    [
        (SETTINGS, {}, "missing or wrong API key"),
        (SETTINGS, {"xi-api-key": "guess"}, "missing or wrong API key"),
        (SETTINGS + "&speed=2", None, "unknown setting speed"),
        ("model_id=tts&output_format=mp3_44100", None, "expected pcm_24000"),
        ("model_id=nope", None, "model 'nope' is not served here"),
        (SETTINGS + "&enable_ssml_parsing=true", None, "enable_ssml_parsing"),
        (SETTINGS + "&seed=-1", None, "seed"),
    ],
)
def test_wrong_keys_and_settings_close_the_socket(server, query, headers, told):
    with open_socket(server, query, headers=headers) as socket:
        message = receive(socket)
        assert told in message["message"] and message["code"] == 1008, message
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=WAIT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


def test_the_elevenlabs_key_header_and_a_speaker_id_voice(server):
    with open_socket(server, "model_id=tts&max_seconds=0.16", voice="1", headers={"xi-api-key": KEY}) as socket:
        socket.send(json.dumps({"text": "Keyed. "}))
        socket.send(json.dumps({"text": ""}))
        assert len(rest_of_audio(socket)) > 0


def test_a_client_that_leaves_cancels_its_job(server):
    before = metric(server, "voxport_cancelled_jobs_total", model="tts", stage="running")
    with open_socket(server, "model_id=tts&seed=1&max_seconds=5") as socket:
        socket.send(json.dumps({"text": PARAGRAPH + " "}))
        socket.send(json.dumps({"text": ""}))
        assert "audio" in receive(socket)
    deadline = time.monotonic() + WAIT
    while metric(server, "voxport_cancelled_jobs_total", model="tts", stage="running") == before:
        assert time.monotonic() < deadline, "the job was not stopped"
        time.sleep(0.2)
    steps = metric(server, "voxport_generation_steps_total", model="tts")
    time.sleep(1)
    assert metric(server, "voxport_generation_steps_total", model="tts") == steps  # nothing runs on
