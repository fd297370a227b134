"""Audio chat over HTTP with the official `openai` SDK as the client: spoken replies, a system prompt, an
assistant's audio.id in the next turn's history, streaming, errors. Replies are checked against the same
conversation run in this process, so they must be what the model says, not merely well-formed."""

import base64
import io

import numpy as np
import openai
import pytest
import soundfile as sf

from voxport.models.base import ChatSettings
from voxport.models.covo.frontend import INPUT_RATE, prepare_clip
from voxport.serve.audio_formats import read_audio_bytes
from voxport.serve.replies import ReplyStore

SYSTEM = "You are a calm narrator. Answer briefly."
SEED = 5


@pytest.fixture(scope="module")
def client(live_server):
    return openai.OpenAI(base_url=f"{live_server.base}/v1", api_key="unused", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def user_turn(voice_clip_b64):
    return {
        "role": "user",
        "content": [{"type": "input_audio", "input_audio": {"data": voice_clip_b64, "format": "wav"}}],
    }


@pytest.fixture(scope="module")
def local_conversation(tiny_covo, voice_clip_b64):
    """The same two rounds in this process: greedy, the same seed (token2wav's noise) and system prompt."""
    samples, rate = read_audio_bytes(base64.b64decode(voice_clip_b64), "clip")
    assert rate == INPUT_RATE
    conversation = tiny_covo.chat(ChatSettings(mode="a2ta", max_new_tokens=12, greedy=True, seed=SEED, persona=SYSTEM))
    return conversation.say(prepare_clip(samples)), conversation.say(prepare_clip(samples))


@pytest.fixture(scope="module")
def first_reply(client, user_turn):
    return spoken_reply(client, user_turn, "wav")


def spoken_reply(client, user_turn, audio_format: str, **options):
    """The seeded, greedy spoken answer to the system turn and `user_turn`."""
    return client.chat.completions.create(
        model="chat",
        messages=[{"role": "system", "content": SYSTEM}, user_turn],
        modalities=["text", "audio"],
        audio={"voice": "alloy", "format": audio_format},
        max_tokens=12,
        temperature=0,
        seed=SEED,
        **options,
    )


def decoded(data: str) -> np.ndarray:
    samples, rate = sf.read(io.BytesIO(base64.b64decode(data)), dtype="float32")
    assert rate == 24000
    return samples


def test_a_spoken_reply_is_the_models_reply(first_reply, local_conversation):
    local, _ = local_conversation
    message = first_reply.choices[0].message
    assert message.content == local.text and message.audio.transcript == local.text
    assert message.audio.id.startswith("audio_") and message.audio.expires_at > first_reply.created
    assert local.speech is not None and np.abs(local.speech).max() > 0
    np.testing.assert_allclose(decoded(message.audio.data), local.speech, atol=1e-4)  # 16-bit WAV of the same
    usage = first_reply.usage
    assert usage.completion_tokens == len(local.text_token_ids) + len(local.audio_codes)
    assert first_reply.choices[0].finish_reason == ("stop" if local.stopped else "length")
    assert usage.prompt_tokens == local.prefill_positions  # the system prompt given, not the reference's


def test_an_audio_id_in_history_restores_the_models_own_speech(client, user_turn, first_reply, local_conversation):
    _, local = local_conversation
    spoken = first_reply.choices[0].message
    history = [{"role": "system", "content": SYSTEM}, user_turn]
    second = client.chat.completions.create(
        model="chat",
        messages=[*history, {"role": "assistant", "audio": {"id": spoken.audio.id}}, user_turn],
        modalities=["text", "audio"],
        audio={"voice": "alloy", "format": "wav"},
        max_tokens=12,
        temperature=0,
        seed=SEED,
    )
    assert second.usage.prompt_tokens == local.cache_positions_before + local.prefill_positions
    assert second.choices[0].message.content == local.text
    np.testing.assert_allclose(decoded(second.choices[0].message.audio.data), local.speech, atol=1e-4)
    as_text = client.chat.completions.create(
        model="chat",
        messages=[*history, {"role": "assistant", "content": spoken.audio.transcript}, user_turn],
        max_tokens=1,
        temperature=0,
    )
    assert as_text.usage.prompt_tokens != second.usage.prompt_tokens  # text alone would lose the speech codes


def test_a_streamed_reply_is_the_whole_reply_in_pieces(client, user_turn, first_reply):
    stream = spoken_reply(client, user_turn, "pcm16", stream=True)
    chunks = list(stream)
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk.id for chunk in chunks}) == 1 and chunks[0].choices[0].delta.role == "assistant"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    audio = [chunk.choices[0].delta.audio for chunk in chunks if chunk.choices[0].delta.audio]
    ids = [piece.id for piece in audio]
    pieces = [piece.data for piece in audio if piece.data]
    expected = first_reply.choices[0].message
    assert text == expected.content == "".join(piece.transcript or "" for piece in audio)
    assert ids[0].startswith("audio_") and not any(ids[1:]) and audio[-1].expires_at  # id first, expiry last
    pcm = np.frombuffer(b"".join(base64.b64decode(piece) for piece in pieces), dtype="<i2")
    whole = sf.read(io.BytesIO(base64.b64decode(expected.audio.data)), dtype="int16")[0]
    np.testing.assert_allclose(pcm, whole, atol=2)  # the same reply, as raw samples (rounding aside)
    last = chunks[-1]
    assert last.choices[0].finish_reason == first_reply.choices[0].finish_reason
    assert last.usage.total_tokens == first_reply.usage.total_tokens
    assert all(chunk.choices[0].finish_reason is None for chunk in chunks[:-1])


def test_a_text_stream_sends_text_as_it_is_made(client, user_turn):
    stream = client.chat.completions.create(
        model="chat", messages=[user_turn], max_tokens=150, temperature=0, stream=True
    )
    chunks = list(stream)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    whole = client.chat.completions.create(model="chat", messages=[user_turn], max_tokens=150, temperature=0)
    assert text == whole.choices[0].message.content and text
    assert len([chunk for chunk in chunks if chunk.choices[0].delta.content]) > 1  # in pieces, not at the end
    assert not any(chunk.choices[0].delta.audio for chunk in chunks)
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


MISTAKES = {
    "an unknown field": (lambda turn: {"messages": [turn], "extra_body": {"speed": 2}}, "unknown field 'speed'"),
    "max_tokens 0": (
        lambda turn: {"messages": [turn], "max_tokens": 0},
        "max_tokens: Input should be greater than or equal to 1",
    ),
    "an expired audio id": (
        lambda turn: {"messages": [turn, {"role": "assistant", "audio": {"id": "audio_0"}}, turn]},
        "messages[1].audio.id 'audio_0' is unknown or has expired",
    ),
    "typed text": (lambda turn: {"messages": [{"role": "user", "content": "Hello?"}]}, "exactly one input_audio part"),
    "audio given as a string": (
        lambda turn: {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": "UklGRg=="}]}]},
        "messages[0].content[0].input_audio: Input should be",
    ),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_mistakes_are_bad_requests_the_sdk_reports(client, user_turn, mistake):
    arguments, message = MISTAKES[mistake]
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="chat", **{"max_tokens": 4, **arguments(user_turn)})
    assert message in refused.value.message and refused.value.body["type"] == "invalid_request_error"


def test_an_unknown_model_is_not_found(client, user_turn):
    with pytest.raises(openai.NotFoundError, match="model 'chat-9' is not served here"):
        client.chat.completions.create(model="chat-9", messages=[user_turn])


def test_kept_replies_expire_and_stay_bounded():
    now = [1000.0]
    store = ReplyStore(ttl=60, capacity=2, clock=lambda: now[0])
    first, expires = store.add("chat", [1, 2, 3], "one")
    assert expires == 1060 and store.get(first).reply_ids.tolist() == [1, 2, 3]
    second, _ = store.add("chat", [4], "two")
    third, _ = store.add("chat", [5], "three")
    assert store.get(first) is None and store.get(second).transcript == "two" and len(store) == 2  # oldest out
    now[0] = 1060.0
    assert store.get(third) is None and len(store) == 0  # expired


def test_a_streamed_conversation_too_long_for_the_context_is_refused_in_the_stream(client, user_turn):
    stream = client.chat.completions.create(model="chat", messages=[user_turn], max_tokens=4090, stream=True)
    with pytest.raises(openai.APIError, match=r"exceeds the model's context of 4096 positions") as refused:
        list(stream)
    assert refused.value.body["type"] == "invalid_request_error"
