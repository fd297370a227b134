"""The speech server through the official `openai` SDK, as a user's code would call it: stream formats, speed,
voices (built-in names and custom ones, kept across restarts), errors, concurrent batched requests."""

import base64
import io
import json
import threading
import time

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf

from serving import Server

FRAME = 1920  # samples per 80 ms frame at 24 kHz
TINY = {"max_seconds": 0.32, "seed": 7}  # 4 frames: the tiny model never ends speech on its own


@pytest.fixture(scope="module")
def voices_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("voices")


@pytest.fixture(scope="module")
def sdk_server(tiny_csm_dir, voices_dir):
    server = Server("--model", f"tts={tiny_csm_dir}", "--voices-dir", str(voices_dir), "--max-batch", "4")
    yield server.base
    server.stop()


@pytest.fixture(scope="module")
def client(sdk_server):
    return openai.OpenAI(base_url=f"{sdk_server}/v1", api_key="unused", max_retries=0, timeout=300)


def speak(client, **options) -> bytes:
    body = {"model": "tts", "voice": "alloy", "input": "Hello from the SDK.", "response_format": "pcm"} | options
    extra = {key: body.pop(key) for key in ("max_seconds", "seed", "temperature") if key in body}
    return client.audio.speech.create(**body, extra_body={**TINY, **extra}).content


def pcm(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2")


def sse_events(client, **options) -> list[dict]:
    body = {
        "model": "tts",
        "voice": "alloy",
        "input": "Hello from the SDK.",
        "response_format": "pcm",
        "stream_format": "sse",
    } | options
    with client.audio.speech.with_streaming_response.create(**body, extra_body=TINY) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        return [json.loads(line.removeprefix("data: ")) for line in response.iter_lines() if line.startswith("data: ")]


def test_alloy_whole_file(client):
    wav = speak(client, response_format="wav")
    samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
    assert rate == 24000 and len(samples) == 4 * FRAME and np.abs(samples).max() > 0


def test_a_compressed_format_streams_whole_at_the_end(client):
    with client.audio.speech.with_streaming_response.create(
        model="tts",
        voice="alloy",
        input="Hello from the SDK.",
        response_format="flac",
        stream_format="audio",
        extra_body=TINY,
    ) as response:
        samples, rate = sf.read(io.BytesIO(response.read()), dtype="float32")
    assert rate == 24000 and len(samples) == 4 * FRAME


def test_raw_audio_stream_and_sse_carry_the_same_audio(client):
    with client.audio.speech.with_streaming_response.create(
        model="tts",
        voice="alloy",
        input="Hello from the SDK.",
        response_format="pcm",
        stream_format="audio",
        extra_body=TINY,
    ) as response:
        pieces = list(response.iter_bytes())
    streamed = b"".join(pieces)
    events = sse_events(client)
    deltas = [event for event in events if event["type"] == "speech.audio.delta"]
    assert [event["type"] for event in events] == ["speech.audio.delta"] * len(deltas) + ["speech.audio.done"]
    assert len(deltas) >= 2  # a short first piece for a quick start, then the rest
    from_sse = b"".join(base64.b64decode(event["audio"]) for event in deltas)
    assert from_sse == streamed and len(streamed) == 4 * FRAME * 2
    usage = events[-1]["usage"]
    assert usage["output_tokens"] == 4 and usage["input_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    whole = pcm(speak(client))  # one-shot decoding of the same frames: the stream joins into it
    assert np.abs(pcm(streamed).astype(int) - whole).max() <= 2


def test_speed_changes_duration_not_pitch(client):
    normal, fast, slow = (pcm(speak(client, speed=speed)) for speed in (1.0, 2.0, 0.5))
    assert len(normal) == 4 * FRAME
    assert abs(len(fast) - len(normal) / 2) <= 1 and abs(len(slow) - len(normal) * 2) <= 1
    assert not np.array_equal(fast, normal[::2])  # a time stretch, not dropped samples


def test_long_text_is_spoken_whole_chunk_by_chunk(client):
    sentence = "This sentence is one of several that together run past one chunk of text. "
    events = sse_events(client, input=sentence * 4)  # about 300 characters: two chunks
    audio = b"".join(base64.b64decode(event["audio"]) for event in events if event["type"] == "speech.audio.delta")
    assert events[-1]["usage"]["output_tokens"] == 8 and len(audio) == 8 * FRAME * 2  # 4 frames a chunk


def test_custom_voice_lifecycle_survives_a_restart(client, tiny_csm_dir, voices_dir, speech_wav):
    consent = client.audio.voice_consents.create(
        language="en-US", name="Ada's consent", recording=speech_wav.open("rb")
    )
    assert consent.object == "audio.voice_consent" and consent.id.startswith("cons_")
    with pytest.raises(openai.BadRequestError, match="transcript is missing"):
        client.audio.voices.create(audio_sample=speech_wav.open("rb"), consent=consent.id, name="Ada")
    with pytest.raises(openai.BadRequestError, match="does not exist"):
        client.audio.voices.create(
            audio_sample=speech_wav.open("rb"),
            consent="cons_none",
            name="Ada",
            extra_body={"transcript": "A short recorded line."},
        )
    voice = client.audio.voices.create(
        audio_sample=speech_wav.open("rb"),
        consent=consent.id,
        name="Ada",
        extra_body={"transcript": "A short recorded line."},
    )
    assert voice.object == "audio.voice" and voice.type == "audio_sample" and voice.name == "Ada"
    with_voice = speak(client, voice={"id": voice.id}, temperature=0)
    assert len(with_voice) == 4 * FRAME * 2  # (that the sample reaches the model: test_serve_capabilities)
    listed = client.get("/audio/voices", cast_to=dict)["voices"]
    assert voice.id in [entry["id"] for entry in listed] and "alloy" in [entry["id"] for entry in listed]

    restarted = Server("--model", f"tts={tiny_csm_dir}", "--voices-dir", str(voices_dir))
    try:
        again = openai.OpenAI(base_url=f"{restarted.base}/v1", api_key="unused", max_retries=0, timeout=300)
        assert speak(again, voice={"id": voice.id}, temperature=0) == with_voice
        assert again.audio.voice_consents.retrieve(consent.id).name == "Ada's consent"
        with pytest.raises(openai.BadRequestError, match=f"used by {voice.id}"):
            again.audio.voice_consents.delete(consent.id)
    finally:
        restarted.stop()
    assert client.audio.voices.delete(voice.id).deleted and client.audio.voice_consents.delete(consent.id).deleted
    with pytest.raises(openai.BadRequestError, match="unknown voice.*alloy"):
        speak(client, voice={"id": voice.id})
    with pytest.raises(openai.NotFoundError):
        client.audio.voices.delete(voice.id)
    assert not list(voices_dir.rglob("*.*"))  # nothing left behind on disk


def test_bad_requests_are_clear_400s(client, sdk_server):
    cases = {
        "seed too large": ({}, {"seed": 2**70}, "seed"),
        "negative top_k": ({}, {"top_k": -1}, "top_k"),
        "speed": ({"speed": 4.5}, {}, "speed"),
        "instructions": ({"instructions": "Speak cheerfully."}, {}, "does not take instructions"),
        "unknown fields": ({}, {"volume": 2, "pitch": 1}, "unknown fields volume, pitch"),
        "aac": ({"response_format": "aac"}, {}, "response_format 'aac' is not available"),
        "unknown voice": ({"voice": "nobody"}, {}, "unknown voice 'nobody': expected one of alloy"),
        "bad stream format": ({"stream_format": "chunks"}, {}, "stream_format"),
    }
    for name, (options, extra, message) in cases.items():
        body = {"model": "tts", "voice": "alloy", "input": "Hi."} | options
        with pytest.raises(openai.BadRequestError) as caught:
            client.audio.speech.create(**body, extra_body={**TINY, **extra})
        error = caught.value.body
        assert message in error["message"], (name, error)
    for value in ("NaN", "Infinity"):  # not JSON, but Python's json module writes them (the SDK refuses to)
        reply = httpx.post(
            f"{sdk_server}/v1/audio/speech",
            headers={"content-type": "application/json"},
            content=f'{{"model": "tts", "input": "Hi.", "temperature": {value}}}',
        )
        assert reply.status_code == 400 and "temperature: Input should be a finite number" in reply.text
    with pytest.raises(openai.BadRequestError, match="cannot design one from a prompt"):
        client.audio.voices.create(name="Designed", prompt="A warm voice.", type="prompt")


def test_concurrent_requests_all_answer(client):
    replies = [None] * 8

    def ask(index):
        replies[index] = speak(client, input=f"Request number {index}.")

    threads = [threading.Thread(target=ask, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(reply is not None and len(reply) == 4 * FRAME * 2 for reply in replies)


def test_the_same_seeded_request_alone_and_batched(client):
    """The request is last of four that queue behind a longer one, so the four run as one batch (the others
    with seeds of their own)."""
    target = "The same words, alone or not."
    alone = speak(client, input=target)
    replies = {}

    def ask(text, seed, seconds=TINY["max_seconds"]):
        replies[text] = speak(client, input=text, seed=seed, max_seconds=seconds)

    threads = [threading.Thread(target=ask, args=("A longer request that keeps the model busy.", 1, 0.8))]
    threads += [
        threading.Thread(target=ask, args=(text, seed))
        for text, seed in [("Other words.", 2), ("More words.", 3), (target, TINY["seed"])]
    ]
    for thread in threads:
        thread.start()
        time.sleep(0.5)  # arrival order: the busy one first, the target last
    for thread in threads:
        thread.join()
    assert replies[target] == alone
