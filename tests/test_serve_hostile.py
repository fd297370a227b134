"""Hostile request bodies over real HTTP: text that is not valid Unicode, numbers that are not ASCII digits or
run past any sane length, bodies nested deep, audio formats that say one thing of bytes that are another. Each
is a 400 naming what is wrong, and the connection it came on stays open for the next request."""

import base64
import http.client
import io
import json
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
import soundfile as sf

from voxport.serve.bodies import MAX_JSON_DEPTH


def chat_turn(clip: str, **audio) -> dict:
    return {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": clip, **audio}}]}


def post(base: str, path: str, body) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()  # ensure_ascii: "\ud800" stays escaped
    return httpx.post(f"{base}{path}", content=content, headers={"content-type": "application/json"}, timeout=120)


def assert_refused(reply: httpx.Response, param: str | None, words: str) -> None:
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and words in error["message"], error


def test_a_lone_surrogate_in_any_text_field_is_a_400_naming_it(live_server, voice_clip_b64):
    base = live_server.base
    assert_refused(post(base, "/v1/audio/speech", {"model": "tts", "input": "Hi \ud800."}), "input", "lone surrogate")
    assert_refused(
        post(base, "/v1/audio/speech", {"model": "tts", "input": "Hi.", "voice": "\udfff"}), "voice", "lone surrogate"
    )
    system = {"role": "system", "content": [{"type": "text", "text": "Be \ud800 brief."}]}
    assert_refused(
        post(base, "/v1/chat/completions", {"model": "chat", "messages": [system, chat_turn(voice_clip_b64)]}),
        "messages[0].content[0].text",
        "lone surrogate",
    )
    assert_refused(
        post(
            base, "/v1/chat/completions", {"model": "chat", "messages": [chat_turn(voice_clip_b64)], "user": "\ud83d"}
        ),
        "user",
        "lone surrogate",
    )
    assert_refused(
        post(base, "/v1/audio/speech", {"model": "tts", "input": "Hi.", "\ud800": 1}), None, "lone surrogate"
    )


@pytest.mark.parametrize("voice", ["²", "٣", "1" * 5000, " 1", "1\n"])
def test_a_voice_that_is_not_ascii_digits_is_a_400_and_the_connection_stays_open(live_server, voice):
    address = urlsplit(live_server.base)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=120)
    try:
        connection.request(
            "POST",
            "/v1/audio/speech",
            json.dumps({"model": "tts", "input": "Hi.", "voice": voice}),
            {"content-type": "application/json"},
        )
        reply = connection.getresponse()
        body = json.loads(reply.read())
        assert reply.status == 400 and body["error"]["code"] == "voice_not_found", body
        assert reply.getheader("connection") != "close"
        opened = connection.sock
        connection.request("GET", "/health")
        again = connection.getresponse()
        assert again.status == 200 and json.loads(again.read())["status"] == "ok"
        assert connection.sock is opened  # the same keep-alive connection answered
    finally:
        connection.close()


@pytest.mark.parametrize("path", ["/v1/audio/speech", "/v1/chat/completions"])
def test_a_body_nested_deep_is_refused_before_it_is_parsed(live_server, path):
    deep = b'{"model": "tts", "input": "Hi.", "voice": ' + b"[" * 100000 + b"]" * 100000 + b"}"
    assert_refused(post(live_server.base, path, deep), None, f"nests deeper than {MAX_JSON_DEPTH} levels")
    brackets_in_text = {"model": "tts", "input": "[" * 100 + "{", "max_seconds": 0.16}
    reply = post(live_server.base, "/v1/audio/speech", brackets_in_text)
    assert reply.status_code == 200, reply.text  # brackets in text are not nesting


def wav_as(container: str, subtype: str | None) -> str:
    t = np.arange(24000) / 24000
    buffer = io.BytesIO()
    sf.write(
        buffer,
        (0.3 * np.sin(2 * np.pi * (180 * t + 60 * t**2))).astype(np.float32),
        24000,
        format=container,
        subtype=subtype,
    )
    return base64.b64encode(buffer.getvalue()).decode()


def test_an_input_audio_format_must_be_known_and_match_the_data(live_server, voice_clip_b64):
    def ask(clip: str, **audio) -> httpx.Response:
        return post(
            live_server.base,
            "/v1/chat/completions",
            {"model": "chat", "max_tokens": 1, "seed": 0, "messages": [chat_turn(clip, **audio)]},
        )

    param = "messages[0].content[0].input_audio.format"
    assert_refused(ask(voice_clip_b64, format="../x"), param, "Input should be 'wav'")
    assert_refused(ask(voice_clip_b64, format="mp3"), param, "is 'mp3' but the audio is wav")
    assert_refused(ask(wav_as("FLAC", "PCM_16"), format="wav"), param, "is 'wav' but the audio is flac")
    for clip, audio in (
        (voice_clip_b64, {"format": "wav"}),
        (wav_as("FLAC", "PCM_16"), {"format": "flac"}),
        (voice_clip_b64, {}),
    ):
        reply = ask(clip, **audio)
        assert reply.status_code == 200, (audio, reply.text)
