"""WebSocket /v1/realtime through the openai SDK's realtime client, on a real server with a tiny Covo: spoken
turns committed by hand or by server VAD, a conversation kept in the model's cache, replies cancelled by the
client or by a closed socket, and every mistake an error event after which the session goes on."""

from __future__ import annotations

import base64
import json
import time

import numpy as np
import pytest
import soundfile as sf
from openai import OpenAI

from conftest import shared_data
from voxport.audio.io import resample
from voxport.models.base import ChatSettings
from voxport.serve.realtime import _samples
from voxport.services.chat import ChatService

RATE = 24000
KEY = "test-key"


@pytest.fixture(scope="module")
def server(tiny_covo_dir):
    from serving import Server

    server = Server("--model", f"chat={tiny_covo_dir}", "--api-key", KEY, "--max-audio-mb", "0.5")
    server.headers = {"Authorization": f"Bearer {KEY}"}
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(server) -> OpenAI:
    return OpenAI(base_url=f"{server.base}/v1", api_key=KEY)


@pytest.fixture(scope="module")
def turns() -> list[bytes]:
    """Two spoken turns as pcm16 at 24 kHz: the first 1.9 s (one phrase) of each real clip, then 1.2 s of silence."""
    clips = []
    for name in ("003000297.wav", "003000298.wav"):
        samples, rate = sf.read(shared_data(name), dtype="float32")
        speech = resample(samples, rate, RATE)[: int(1.9 * RATE)]
        clips.append((np.concatenate([speech, np.zeros(int(1.2 * RATE), np.float32)]) * 32767).astype("<i2").tobytes())
    return clips


def events_until(connection, kind: str, limit: float = 120) -> list:
    """Server events up to and including the first of `kind`."""
    seen, deadline = [], time.monotonic() + limit
    while time.monotonic() < deadline:
        seen.append(connection.recv())
        if seen[-1].type == kind:
            return seen
    raise AssertionError(f"no {kind} within {limit} s: {[event.type for event in seen]}")


def append(connection, pcm: bytes, piece: int = 9600) -> None:
    """Audio as a microphone sends it: 200 ms appends."""
    for start in range(0, len(pcm), piece):
        connection.input_audio_buffer.append(audio=base64.b64encode(pcm[start : start + piece]).decode())


def manual(connection, max_tokens: int = 6) -> None:
    connection.session.update(
        session={
            "type": "realtime",
            "output_modalities": ["audio"],
            "max_output_tokens": max_tokens,
            "audio": {"input": {"turn_detection": None}},
        }
    )
    events_until(connection, "session.updated")


def test_two_manual_turns_keep_the_conversation_in_the_cache(client, turns, tiny_covo):
    with client.realtime.connect(model="chat") as connection:
        assert connection.recv().type == "session.created"
        manual(connection)
        done, transcripts = [], []
        for pcm in turns:
            append(connection, pcm)
            connection.input_audio_buffer.commit()
            events_until(connection, "conversation.item.created")
            connection.response.create()
            events = events_until(connection, "response.done")
            done.append(events[-1].response)
            audio = b"".join(
                base64.b64decode(event.delta) for event in events if event.type == "response.output_audio.delta"
            )
            kinds = [event.type for event in events]
            assert kinds[0] == "response.created" and "response.output_audio.done" in kinds
            assert done[-1].status in ("completed", "incomplete")
            transcripts += [
                event.transcript for event in events if event.type == "response.output_audio_transcript.done"
            ]
            if done[-1].usage.output_token_details.audio_tokens:
                assert len(audio) > 0 and len(audio) % 2 == 0
    # the same two turns in a local conversation: round 0 is greedy, so the first replies match; the second
    # round's prompt is its own audio only, after the first round's history
    service = ChatService(tiny_covo)
    service.prepare_speech()
    local = service.open(ChatSettings(mode="a2ta", max_new_tokens=6))
    rounds = [local.say(service.clip(_samples(pcm), RATE)) for pcm in turns]
    first, second = (response.usage for response in done)
    assert transcripts[0] == done[0].output[0].content[0].transcript == rounds[0].text
    assert first.input_token_details.cached_tokens == 0
    assert first.input_tokens == rounds[0].prefill_positions
    assert second.input_token_details.cached_tokens == rounds[1].cache_positions_before > first.input_tokens
    assert second.input_tokens - second.input_token_details.cached_tokens == rounds[1].prefill_positions


def test_server_vad_commits_each_turn_and_answers_it(client, turns):
    with client.realtime.connect(model="chat") as connection:
        session = connection.recv().session
        assert session.audio.input.turn_detection.type == "server_vad"  # OpenAI's default
        connection.session.update(session={"type": "realtime", "max_output_tokens": 6})
        events_until(connection, "session.updated")
        usages = []
        for index, pcm in enumerate(turns):
            append(connection, pcm)
            events = events_until(connection, "response.done")
            kinds = [event.type for event in events]
            order = [
                "input_audio_buffer.speech_started",
                "input_audio_buffer.speech_stopped",
                "input_audio_buffer.committed",
                "conversation.item.created",
                "response.created",
            ]
            assert [kind for kind in kinds if kind in order][:5] == order, kinds
            started = next(event for event in events if event.type == "input_audio_buffer.speech_started")
            stopped = next(event for event in events if event.type == "input_audio_buffer.speech_stopped")
            offset = index * len(turns[0]) // 2 * 1000 // RATE  # times count from the session's first audio
            assert offset - 300 <= started.audio_start_ms < stopped.audio_end_ms <= offset + 3100  # 300: padding
            usages.append(events[-1].response.usage)
        assert usages[1].input_token_details.cached_tokens > usages[0].input_tokens  # the second turn hears the first


def test_a_cancelled_reply_stops_and_the_session_goes_on(client, server, turns):
    before = server.metric("voxport_cancelled_jobs_total", model="chat", stage="running")
    with client.realtime.connect(model="chat") as connection:
        connection.recv()
        manual(connection, max_tokens=1500)
        append(connection, turns[0])
        connection.input_audio_buffer.commit()
        connection.response.create()
        events_until(connection, "response.created")
        time.sleep(0.5)
        connection.response.cancel()
        done = events_until(connection, "response.done")[-1].response
        assert done.status == "cancelled"
        assert done.usage is None
        connection.response.cancel()  # nothing left to cancel
        assert events_until(connection, "error")[-1].error.code == "response_cancel_not_active"
        connection.session.update(session={"type": "realtime", "max_output_tokens": 1500})
        assert events_until(connection, "error")[-1].error.code == "session_fixed"
        append(connection, turns[1])
        connection.input_audio_buffer.commit()
        connection.response.create()
        events_until(connection, "response.created")
        time.sleep(0.3)
        connection.response.cancel()
        assert events_until(connection, "response.done")[-1].response.status == "cancelled"
    assert server.metric("voxport_cancelled_jobs_total", model="chat", stage="running") >= before + 1


def test_a_closed_socket_cancels_its_reply(client, server, turns):
    before = sum(
        server.metric("voxport_cancelled_jobs_total", model="chat", stage=stage) for stage in ("queued", "running")
    )
    with client.realtime.connect(model="chat") as connection:
        connection.recv()
        manual(connection, max_tokens=1500)
        append(connection, turns[0])
        connection.input_audio_buffer.commit()
        connection.response.create()
        events_until(connection, "response.created")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (
            sum(
                server.metric("voxport_cancelled_jobs_total", model="chat", stage=stage)
                for stage in ("queued", "running")
            )
            > before
        ):
            return
        time.sleep(0.2)
    raise AssertionError("the reply of a closed socket was not cancelled")


MISTAKES = {
    "malformed JSON": ("{not json", "invalid_json"),
    "unknown event type": (json.dumps({"type": "input_audio_buffer.rewind"}), "invalid_event"),
    "no type": (json.dumps({"audio": "AAAA"}), "invalid_event"),
    "g711 input": (
        json.dumps(
            {
                "type": "session.update",
                "session": {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcma"}}}},
            }
        ),
        "unsupported_audio_format",
    ),
    "16 kHz output": (
        json.dumps(
            {
                "type": "session.update",
                "session": {"type": "realtime", "audio": {"output": {"format": {"type": "audio/pcm", "rate": 16000}}}},
            }
        ),
        "unsupported_audio_format",
    ),
    "odd byte count": (
        json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(b"abc").decode()}),
        "invalid_audio_format",
    ),
    "not base64": (json.dumps({"type": "input_audio_buffer.append", "audio": "***"}), "invalid_audio"),
    "oversized append": (
        json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(600_000)).decode()}),
        "audio_too_large",
    ),
    "empty commit": (json.dumps({"type": "input_audio_buffer.commit"}), "input_audio_buffer_commit_empty"),
    "nothing to answer": (json.dumps({"type": "response.create"}), "no_user_turn"),
    "typed text": (
        json.dumps(
            {
                "type": "conversation.item.create",
                "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            }
        ),
        None,
    ),
}


def test_mistakes_are_error_events_and_the_session_goes_on(client, turns):
    with client.realtime.connect(model="chat") as connection:
        connection.recv()
        manual(connection)
        for name, (raw, code) in MISTAKES.items():
            connection.send_raw(raw)
            event = connection.recv()
            assert event.type == "error", name
            assert event.error.type == "invalid_request_error" and event.error.message, name
            assert event.error.code == code, (name, event.error)
        # still the same session: a turn given as an item is answered
        connection.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_audio", "audio": base64.b64encode(turns[0][: RATE * 4]).decode()}],
            }
        )
        events_until(connection, "conversation.item.created")
        connection.response.create()
        assert events_until(connection, "response.done")[-1].response.status in ("completed", "incomplete")


def test_the_key_is_checked_before_the_session_opens(server):
    from websockets.exceptions import InvalidStatus

    with pytest.raises(Exception) as refused:
        with OpenAI(base_url=f"{server.base}/v1", api_key="wrong").realtime.connect(model="chat") as connection:
            connection.recv()
    assert isinstance(refused.value, InvalidStatus) or "401" in str(refused.value)
    from websockets.sync.client import connect

    url = server.base.replace("http", "ws") + "/v1/realtime?model=chat"
    with connect(url, subprotocols=["realtime", f"openai-insecure-api-key.{KEY}"]) as socket:  # a browser's way
        assert socket.subprotocol == "realtime"
        assert json.loads(socket.recv())["type"] == "session.created"
    with pytest.raises(InvalidStatus) as missing:
        connect(url.replace("chat", "nope"), additional_headers={"Authorization": f"Bearer {KEY}"})
    assert missing.value.response.status_code == 404
