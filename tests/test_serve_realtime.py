"""WebSocket /v1/realtime through the openai SDK's realtime client, on a real server with a tiny Covo: spoken
turns committed by hand or by server VAD, a conversation kept in the model's cache, G.711 both ways, replies
cancelled by the client or by a closed socket, and every mistake an error event after which the session goes
on. Every wait has a deadline: a socket that stays silent is closed and the test fails, saying what it saw."""

from __future__ import annotations

import base64
import io
import json
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from conftest import shared_data
from serving import API_KEY
from voxport.audio.io import resample
from voxport.audio.voice_activity import vad_available
from voxport.models.base import ChatSettings
from voxport.services.chat import ChatService

pytest.importorskip("websockets", reason="the realtime socket needs the websockets package (voxport[realtime])")
from openai import OpenAI

RATE = 24000
KEY = API_KEY
needs_vad = pytest.mark.skipif(
    not vad_available(), reason="server_vad needs silero-vad (pip install voxport[realtime])"
)


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


def voiced(seconds: float, seed: int) -> np.ndarray:
    """A voice-like signal at 24 kHz (a gliding 120 Hz pulse train through vowel formants, four syllables a
    second), which Silero VAD hears as speech: turns that need no shared data."""
    from scipy.signal import lfilter

    t = np.arange(int(seconds * RATE)) / RATE
    phase = 2 * np.pi * np.cumsum(120 + 20 * np.sin(2 * np.pi * 0.7 * t)) / RATE
    source = sum(np.sin(k * phase) / k for k in range(1, 40))
    out, piece = np.zeros_like(t), int(0.25 * RATE)
    vowels = [(700, 1200, 2600), (300, 2300, 3000), (500, 900, 2500), (400, 1900, 2600)]
    for index, start in enumerate(range(0, len(t), piece)):
        shaped = source[start : start + piece]
        for formant in vowels[(index + seed) % len(vowels)]:
            radius, angle = np.exp(-np.pi * 100 / RATE), 2 * np.pi * formant / RATE
            shaped = lfilter([1 - radius], [1, -2 * radius * np.cos(angle), radius**2], shaped)
        out[start : start + piece] = shaped
    out *= 0.6 - 0.4 * np.cos(2 * np.pi * 4 * t)
    return (0.3 * out / np.abs(out).max()).astype(np.float32)


def pcm(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def samples_of(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, "<i2").astype(np.float32) / 32768


SPEECH_SECONDS, SILENCE_SECONDS = 1.9, 1.2


def spoken_turns(kind: str) -> list[bytes]:
    """Two spoken turns as pcm16 at 24 kHz: 1.9 s of speech (a voice-like signal, or the first phrase of each
    real clip), then 1.2 s of silence."""
    clips = []
    for seed, name in enumerate(("003000297.wav", "003000298.wav")):
        if kind == "synthetic":
            speech = voiced(SPEECH_SECONDS, seed)
        else:
            samples, rate = sf.read(shared_data(name), dtype="float32")
            speech = resample(samples, rate, RATE)[: int(SPEECH_SECONDS * RATE)]
        clips.append(pcm(np.concatenate([speech, np.zeros(int(SILENCE_SECONDS * RATE), np.float32)])))
    return clips


@pytest.fixture(scope="module", params=["synthetic", "real"])
def turns(request) -> list[bytes]:
    """The conversations run on both kinds of turns (the real ones skip where the shared clips are absent)."""
    return spoken_turns(request.param)


@pytest.fixture(scope="module")
def voiced_turns() -> list[bytes]:
    return spoken_turns("synthetic")


def recv(connection, limit: float = 60):
    """The next server event; a socket silent for `limit` s is closed, which fails the test."""
    watchdog = threading.Timer(limit, connection.close)
    watchdog.start()
    try:
        return connection.recv()
    except Exception as error:
        raise AssertionError(f"no server event within {limit} s ({type(error).__name__})") from error
    finally:
        watchdog.cancel()


def events_until(connection, kind: str, limit: float = 120) -> list:
    """Server events up to and including the first of `kind`."""
    seen, deadline = [], time.monotonic() + limit
    while time.monotonic() < deadline:
        seen.append(recv(connection, max(1.0, deadline - time.monotonic())))
        if seen[-1].type == kind:
            return seen
    raise AssertionError(f"no {kind} within {limit} s: {[event.type for event in seen]}")


def append(connection, audio: bytes, piece: int = 9600) -> None:
    """Audio as a microphone sends it: 200 ms appends."""
    for start in range(0, len(audio), piece):
        connection.input_audio_buffer.append(audio=base64.b64encode(audio[start : start + piece]).decode())


def manual(connection, max_tokens: int = 6, **session) -> None:
    connection.session.update(
        session={
            "type": "realtime",
            "output_modalities": ["audio"],
            "max_output_tokens": max_tokens,
            "audio": {"input": {"turn_detection": None}},
            **session,
        }
    )
    events_until(connection, "session.updated")


def audio_of(events) -> bytes:
    return b"".join(base64.b64decode(event.delta) for event in events if event.type == "response.output_audio.delta")


def test_two_manual_turns_keep_the_conversation_in_the_cache(client, turns, tiny_covo):
    with client.realtime.connect(model="chat") as connection:
        assert recv(connection).type == "session.created"
        manual(connection)
        done, transcripts, audio = [], [], []
        for turn in turns:
            append(connection, turn)
            connection.input_audio_buffer.commit()
            events_until(connection, "conversation.item.done")
            connection.response.create()
            events = events_until(connection, "response.done")
            kinds = [event.type for event in events]
            assert kinds[0] == "response.created" and "response.output_audio.done" in kinds
            done.append(events[-1].response)
            assert done[-1].status in ("completed", "incomplete")
            transcripts += [e.transcript for e in events if e.type == "response.output_audio_transcript.done"]
            audio.append(audio_of(events))
    # the same two turns in a local conversation: round 0 is greedy, so the first replies match; the second
    # round's prompt is its own audio only, after the first round's history
    service = ChatService(tiny_covo)
    service.prepare_speech()
    local = service.open(ChatSettings(mode="a2ta", max_new_tokens=6))
    rounds = [local.say(service.clip(samples_of(turn), RATE)) for turn in turns]
    first, second = (response.usage for response in done)
    assert transcripts[0] == done[0].output[0].content[0].transcript == rounds[0].text
    if rounds[0].speech is not None:  # the reply spoke: its audio came back, as long as the local one
        assert len(audio[0]) == 2 * len(resample(rounds[0].speech, service.speech_rate, RATE))
    assert first.input_token_details.cached_tokens == 0
    assert first.input_tokens == rounds[0].prefill_positions
    # turn 2 prefilled only its own prompt: what it read before is turn 1 (prompt and reply), from the cache
    assert second.input_token_details.cached_tokens == rounds[1].cache_positions_before
    assert rounds[1].cache_positions_before == rounds[0].prefill_positions + len(rounds[0].reply_ids)
    assert second.input_tokens - second.input_token_details.cached_tokens == rounds[1].prefill_positions
    assert rounds[1].prefill_positions < first.input_tokens  # no system prompt again, no turn 1 again
    assert second.input_token_details.audio_tokens == rounds[1].audio_features


@needs_vad
def test_server_vad_commits_each_turn_and_answers_it(client, turns):
    with client.realtime.connect(model="chat") as connection:
        session = recv(connection).session
        assert session.audio.input.turn_detection.type == "server_vad"  # OpenAI's default
        connection.session.update(session={"type": "realtime", "max_output_tokens": 6})
        events_until(connection, "session.updated")
        usages = []
        for index, turn in enumerate(turns):
            append(connection, turn)
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
            speech_end = offset + SPEECH_SECONDS * 1000
            assert offset - 340 <= started.audio_start_ms <= offset + 500, started  # 300: the padding before
            assert offset + 1000 < stopped.audio_end_ms <= speech_end + 400, stopped  # and after
            committed = next(event for event in events if event.type == "input_audio_buffer.committed")
            assert committed.item_id == started.item_id == stopped.item_id
            assert events[-1].response.status in ("completed", "incomplete")
            usages.append(events[-1].response.usage)
        # the second turn hears the first: its prompt starts after turn 1's prompt and reply, cached
        assert usages[1].input_token_details.cached_tokens > usages[0].input_tokens
        assert usages[1].input_tokens - usages[1].input_token_details.cached_tokens < usages[0].input_tokens


def test_g711_both_ways_and_text_replies(client, voiced_turns):
    """µ-law in, A-law out: 8 kHz, one byte a sample; then text-only replies in the same conversation."""
    speech = samples_of(voiced_turns[0])
    with client.realtime.connect(model="chat") as connection:
        recv(connection)
        manual(connection, audio={"input": {"format": {"type": "audio/pcmu"}, "turn_detection": None},
                                  "output": {"format": {"type": "audio/pcma"}}})  # fmt: skip
        buffer = io.BytesIO()
        sf.write(buffer, resample(speech, RATE, 8000), 8000, format="RAW", subtype="ULAW")
        append(connection, buffer.getvalue(), piece=1600)
        connection.input_audio_buffer.commit()
        connection.response.create()
        events = events_until(connection, "response.done")
        first = events[-1].response.usage
        assert first.input_token_details.audio_tokens > 0
        alaw = audio_of(events)
        if events[-1].response.usage.output_token_details.audio_tokens:
            assert alaw, "a reply with speech codes sent no audio"
            heard, rate = sf.read(io.BytesIO(alaw), format="RAW", subtype="ALAW", samplerate=8000, channels=1)
            assert rate == 8000 and len(heard) == len(alaw) and np.abs(heard).max() > 0
        connection.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        events_until(connection, "session.updated")
        append(connection, buffer.getvalue(), piece=1600)
        connection.input_audio_buffer.commit()
        connection.response.create()
        events = events_until(connection, "response.done")
        kinds = {event.type for event in events}
        assert "response.output_text.done" in kinds and "response.output_audio.delta" not in kinds
        text = next(event.text for event in events if event.type == "response.output_text.done")
        deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
        assert text == deltas == events[-1].response.output[0].content[0].text
        # a session.update that changes what the model reads reopens the conversation: its history read again
        usage = events[-1].response.usage
        assert usage.input_token_details.cached_tokens == 0
        assert usage.input_tokens > first.input_tokens  # turn 1 (prompt and reply) read again before turn 2


def wait_for(condition, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {limit} s")


def cancelled_jobs(server) -> float:
    return sum(
        server.metric("voxport_cancelled_jobs_total", model="chat", stage=stage) for stage in ("queued", "running")
    )


def start_a_long_reply(connection, turn) -> None:
    """A fresh session answers `turn` with up to 1500 tokens; returns once the reply is being made."""
    recv(connection)
    manual(connection, max_tokens=1500)
    append(connection, turn)
    connection.input_audio_buffer.commit()
    connection.response.create()
    events_until(connection, "response.output_audio_transcript.delta")


def test_a_cancelled_reply_stops_and_the_session_goes_on(client, server, voiced_turns):
    before = cancelled_jobs(server)
    with client.realtime.connect(model="chat") as connection:
        start_a_long_reply(connection, voiced_turns[0])
        connection.response.cancel()
        events = events_until(connection, "response.done", limit=10)
        assert events[-1].response.status == "cancelled"
        assert events[-1].response.status_details.reason == "client_cancelled"
        assert "response.output_audio.delta" not in {event.type for event in events}
        wait_for(lambda: cancelled_jobs(server) == before + 1)  # the worker stopped it at a step
        wait_for(lambda: server.metric("voxport_queue_depth", model="chat") == 0)
        connection.response.cancel()  # nothing left to cancel
        assert events_until(connection, "error")[-1].error.code == "response_cancel_not_active"
        # the next turn is answered from a conversation without the stopped one
        connection.session.update(session={"type": "realtime", "max_output_tokens": 4})
        events_until(connection, "session.updated")
        append(connection, voiced_turns[1])
        connection.input_audio_buffer.commit()
        connection.response.create()
        done = events_until(connection, "response.done")[-1].response
        assert done.status in ("completed", "incomplete")
        assert done.usage.input_token_details.cached_tokens == 0


def test_a_closed_socket_cancels_its_reply(client, server, voiced_turns):
    before = cancelled_jobs(server)
    with client.realtime.connect(model="chat") as connection:
        start_a_long_reply(connection, voiced_turns[0])
    wait_for(lambda: cancelled_jobs(server) == before + 1)
    wait_for(lambda: server.metric("voxport_queue_depth", model="chat") == 0)


def test_a_queued_reply_is_cancelled_without_waiting_for_the_worker(client, server, voiced_turns):
    """Another session's long reply holds the worker: this session's reply waits in the queue, and its cancel is
    answered at once (the worker skips the job when it comes to it)."""
    before = server.metric("voxport_cancelled_jobs_total", model="chat", stage="queued")
    with client.realtime.connect(model="chat") as busy, client.realtime.connect(model="chat") as waiting:
        for connection in (busy, waiting):
            recv(connection)
            manual(connection, max_tokens=1500)
            append(connection, voiced_turns[0])
            connection.input_audio_buffer.commit()
        busy.response.create()
        events_until(busy, "response.output_audio_transcript.delta")  # the worker is on the busy reply
        waiting.response.create()
        events_until(waiting, "response.created")
        waiting.response.cancel()
        assert events_until(waiting, "response.done", limit=5)[-1].response.status == "cancelled"
        busy.response.cancel()
        events_until(busy, "response.done", limit=10)
    wait_for(lambda: server.metric("voxport_cancelled_jobs_total", model="chat", stage="queued") == before + 1)


def wav_bytes(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def event(kind: str, **fields) -> str:
    return json.dumps({"type": kind, **fields})


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


MISTAKES = {
    "malformed JSON": ("{not json", "invalid_json"),
    "not an object": ("[1, 2]", "invalid_event"),
    "unknown event type": (event("input_audio_buffer.rewind"), "invalid_event"),
    "no type": (json.dumps({"audio": "AAAA"}), "invalid_event"),
    "16 kHz output": (
        event(
            "session.update",
            session={"type": "realtime", "audio": {"output": {"format": {"type": "audio/pcm", "rate": 16000}}}},
        ),
        "unsupported_audio_format",
    ),  # fmt: skip
    "opus input": (
        event("session.update", session={"type": "realtime", "audio": {"input": {"format": {"type": "audio/opus"}}}}),
        "unsupported_audio_format",
    ),
    "semantic VAD": (
        event(
            "session.update",
            session={"type": "realtime", "audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}},
        ),
        "unsupported_turn_detection",
    ),  # fmt: skip
    "tools": (
        event("session.update", session={"type": "realtime", "tools": [{"type": "function"}]}),
        "unsupported_field",
    ),  # fmt: skip
    "odd byte count": (event("input_audio_buffer.append", audio=b64(b"abc")), "invalid_audio_format"),
    "a WAV file as pcm16": (
        event("input_audio_buffer.append", audio=b64(wav_bytes(np.zeros(2400, np.float32)))),
        "invalid_audio_format",
    ),
    "not base64": (event("input_audio_buffer.append", audio="***"), "invalid_audio"),
    "no audio": (event("input_audio_buffer.append"), "invalid_audio"),
    "oversized append": (event("input_audio_buffer.append", audio=b64(bytes(600_000))), "audio_too_large"),
    "empty commit": (event("input_audio_buffer.commit"), "input_audio_buffer_commit_empty"),
    "nothing to answer": (event("response.create"), "no_user_turn"),
    "per-response instructions": (event("response.create", response={"instructions": "be brief"}), None),
    "typed text": (
        event(
            "conversation.item.create",
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        ),
        "unsupported_item",
    ),  # fmt: skip
    "nothing to cancel": (event("response.cancel"), "response_cancel_not_active"),
}


def test_mistakes_are_error_events_and_the_session_goes_on(client, server, voiced_turns):
    with client.realtime.connect(model="chat") as connection:
        recv(connection)
        manual(connection)
        for name, (raw, code) in MISTAKES.items():
            connection.send_raw(raw)
            answer = recv(connection)
            assert answer.type == "error", name
            assert answer.error.type == "invalid_request_error" and answer.error.message, name
            assert answer.error.code == code, (name, answer.error)
        connection.send_raw(event("response.cancel", event_id="mine"))
        assert recv(connection).error.event_id == "mine"  # the error names the client event it answers
        # still the same session, its settings untouched: a turn given as an item is answered
        connection.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_audio", "audio": b64(voiced_turns[0])}],
            }
        )
        events_until(connection, "conversation.item.done")
        connection.response.create()
        done = events_until(connection, "response.done")[-1].response
        assert done.status in ("completed", "incomplete") and done.usage.output_tokens <= 6
    # replicas post their metrics every second: wait for them
    wait_for(lambda: server.metric("voxport_errors_total", endpoint="/v1/realtime", type="invalid_json") >= 1, 10)


def test_the_key_is_checked_before_the_session_opens(server):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    url = server.base.replace("http", "ws") + "/v1/realtime?model=chat"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, additional_headers={"Authorization": "Bearer wrong"})
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body)["error"]["code"] == "invalid_api_key"
    with connect(url, subprotocols=["realtime", f"openai-insecure-api-key.{KEY}"]) as socket:  # a browser's way
        assert socket.subprotocol == "realtime"
        assert json.loads(socket.recv(timeout=30))["type"] == "session.created"
    with pytest.raises(InvalidStatus) as missing:
        connect(url.replace("chat", "nope"), additional_headers={"Authorization": f"Bearer {KEY}"})
    assert missing.value.response.status_code == 404
    with pytest.raises(Exception) as wrong:  # the SDK with a wrong key
        with OpenAI(base_url=f"{server.base}/v1", api_key="wrong").realtime.connect(model="chat") as connection:
            recv(connection)
    assert "401" in str(wrong.value)
