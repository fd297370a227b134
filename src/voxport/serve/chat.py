"""POST /v1/chat/completions (models that answer audio) in OpenAI's audio-chat shape, whole or streamed.

Every request carries the conversation so far; it is replayed into the model's cache (user audio and the
replies given then), and the last user audio is answered. A spoken reply gets an `audio.id`: a later request
may send back `{"role": "assistant", "audio": {"id": ...}}` and the reply is restored as the model made it,
speech codes included (see replies.py). A system message replaces the reference's persona.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from voxport.errors import VoxportError
from voxport.models.base import ChatSettings
from voxport.serve.audio_formats import (
    check_declared_format,
    decode_base64_audio,
    encode,
    read_audio_bytes,
    supported_formats,
)
from voxport.serve.chat_body import AssistantMessage, AudioOutput, AudioPart, ChatBody, SystemMessage, UserMessage
from voxport.serve.errors import APIError
from voxport.serve.replies import ReplyStore
from voxport.serve.streams import StreamFailed, job_pieces
from voxport.serve.voices import OPENAI_VOICES
from voxport.serve.workers import Job, step_boundary
from voxport.services.chat import ChatRequest, ChatService

# The models that answer audio speak in one voice (their checkpoint's speaker prompt): OpenAI's names and
# "default" all get it.
VOICES = ("default", *OPENAI_VOICES)
AUDIO_FORMAT_ALIASES = {"pcm16": "pcm"}  # OpenAI's name for raw 16-bit samples
STREAM_AUDIO_BYTES = 48000  # base64 audio per streamed chunk: one second of 24 kHz pcm


@dataclass(frozen=True)
class ChatJob:
    request: ChatRequest
    audio_format: str | None  # spoken replies' format; None when the reply is text only
    stream: bool


def chat_job(
    body: ChatBody, service: ChatService, model_name: str, replies: ReplyStore, max_audio_bytes: int
) -> ChatJob:
    if set(body.modalities) not in ({"text"}, {"text", "audio"}):
        raise APIError(400, 'modalities must be ["text"] or ["text", "audio"]', "modalities")
    speaking = "audio" in body.modalities
    audio_format = None
    if speaking:
        wanted = body.audio or AudioOutput()
        audio_format = AUDIO_FORMAT_ALIASES.get(wanted.format, wanted.format)
        if audio_format not in supported_formats():
            raise APIError(
                400,
                f"audio.format '{wanted.format}' is not available here: expected one of "
                f"{', '.join(supported_formats())}",
                "audio.format",
            )
        if wanted.voice not in VOICES:
            raise APIError(
                400,
                f"audio.voice '{wanted.voice}' is unknown: {model_name} speaks in one voice, "
                f"named by any of {', '.join(VOICES)}",
                "audio.voice",
            )
    persona, history, pending = _system_text(body.messages), [], None
    audio_bytes = AudioBudget(max_audio_bytes)
    for index, message in enumerate(body.messages):
        if isinstance(message, UserMessage):
            if pending is not None:
                raise APIError(
                    400, f"messages[{index}]: two user turns in a row; put the reply between them", "messages"
                )
            pending = _user_clip(service, message, index, audio_bytes)
        elif isinstance(message, AssistantMessage):
            if pending is None:
                raise APIError(400, f"messages[{index}]: an assistant reply needs a user turn before it", "messages")
            history.append((pending, _reply(message, index, model_name, replies)))
            pending = None
    if pending is None:
        raise APIError(400, "messages must end with a user message holding input_audio", "messages")
    try:
        settings = ChatSettings(
            mode="a2ta" if speaking else "a2t",
            max_new_tokens=body.max_completion_tokens or body.max_tokens,
            top_p=body.top_p,
            seed=body.seed,
            persona=persona,
            temperature=body.temperature,
        )
    except VoxportError as error:
        raise APIError(400, str(error), "messages" if persona is not None else None) from None
    return ChatJob(ChatRequest(pending, settings, tuple(history)), audio_format, body.stream)


def run_chat(service: ChatService, jobs: list[Job]) -> None:
    """The worker's side: the conversation answered by the service; the reply's text streamed as it comes."""
    job = jobs[0]
    if callable(job.payload):  # a live session's reply: its conversation lives in the session (serve/realtime.py)
        job.payload(jobs)
        return
    chat: ChatJob = job.payload
    text = service.reply_text()

    def on_token(ids: list[int]) -> None:
        step_boundary(jobs, len(ids))
        if job.chunks is not None and (delta := text.add(ids)):
            job.chunks.put(delta)

    turn = service.answer(chat.request, on_token=on_token)
    if job.chunks is not None:
        job.chunks.put(None)
    job.future.set_result(turn)


def completion(model_name: str, turn, request: ChatJob, sample_rate: int | None, replies: ReplyStore) -> dict:
    """OpenAI's chat.completion object for one answered round."""
    message = {"role": "assistant", "content": turn.text}
    if turn.speech is not None:
        reply_id, expires_at = replies.add(model_name, turn.reply_ids, turn.text)
        assert sample_rate is not None and request.audio_format is not None  # a spoken reply was asked for
        data = base64.b64encode(encode(turn.speech, sample_rate, request.audio_format)).decode()
        message["audio"] = {"id": reply_id, "data": data, "expires_at": expires_at, "transcript": turn.text}
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": [{"index": 0, "message": message, "finish_reason": _finish_reason(turn)}],
        "usage": _usage(turn),
    }


async def completion_events(job: Job, model_name: str, sample_rate: int | None, replies: ReplyStore):
    """OpenAI's chat.completion.chunk events (server-sent events): the text as it is made, then the spoken
    reply (its id and transcript, base64 audio pieces, its expiry), then finish_reason and usage, then [DONE].
    A failure half-way is an error event, as OpenAI sends one, and no [DONE]."""
    chunk = _chunk_maker(model_name)
    yield _event(chunk({"role": "assistant", "content": ""}))
    sent = ""
    try:
        async for delta in job_pieces(job):
            sent += delta
            yield _event(chunk({"content": delta}))
    except StreamFailed as error:
        if isinstance(error.__cause__, VoxportError):  # found by the model, but the request's own fault
            refusal = {"message": str(error.__cause__), "type": "invalid_request_error", "code": None}
        else:
            refusal = {
                "message": f"the reply failed half-way: {error}",
                "type": "server_error",
                "code": "stream_failed",
            }
        yield _event({"error": {**refusal, "param": None}})
        return
    turn = job.future.result()
    if turn.text != sent and turn.text.startswith(sent):
        yield _event(chunk({"content": turn.text[len(sent) :]}))
    if turn.speech is not None:
        reply_id, expires_at = replies.add(model_name, turn.reply_ids, turn.text)
        yield _event(chunk({"audio": {"id": reply_id, "transcript": turn.text}}))
        assert sample_rate is not None  # a spoken reply was asked for
        audio = encode(turn.speech, sample_rate, job.payload.audio_format)
        for start in range(0, len(audio), STREAM_AUDIO_BYTES):
            piece = base64.b64encode(audio[start : start + STREAM_AUDIO_BYTES]).decode()
            yield _event(chunk({"audio": {"data": piece}}))
        yield _event(chunk({"audio": {"expires_at": expires_at}}))
    yield _event(chunk({}, finish_reason=_finish_reason(turn), usage=_usage(turn)))
    yield "data: [DONE]\n\n"


def _chunk_maker(model_name: str):
    ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: dict, finish_reason: str | None = None, usage: dict | None = None) -> dict:
        body = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model_name,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
        return body | ({"usage": usage} if usage else {})

    return chunk


def _event(data: dict) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def _finish_reason(turn) -> str:
    return "stop" if turn.stopped else "length"


def _usage(turn) -> dict:
    prompt = turn.cache_positions_before + turn.prefill_positions
    generated = len(turn.text_token_ids) + len(turn.audio_codes)
    return {"prompt_tokens": prompt, "completion_tokens": generated, "total_tokens": prompt + generated}


def _system_text(messages: list) -> str | None:
    """The system messages' text (they must come before the first user turn), or None when there are none."""
    texts = []
    for index, message in enumerate(messages):
        if isinstance(message, SystemMessage):
            if any(isinstance(earlier, UserMessage) for earlier in messages[:index]):
                raise APIError(
                    400,
                    f"messages[{index}]: a {message.role} message must come before the first user "
                    "turn (the model reads its system prompt once, at the start)",
                    "messages",
                )
            texts.append(_plain_text(message.content))
    return "\n".join(texts) if texts else None


def _plain_text(content) -> str:
    return content if isinstance(content, str) else "".join(part.text for part in content)


class AudioBudget:
    """The audio bytes one request may send, all its turns together."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0

    def take(self, data: str, param: str) -> bytes:
        raw = decode_base64_audio(data, self.limit, param)
        self.used += len(raw)
        if self.used > self.limit:
            raise APIError(
                413,
                f"{param}: with the turns before it, this request sends {self.used} bytes of audio; "
                f"the limit is {self.limit} for all turns together",
                param,
            )
        return raw


def _user_clip(service: ChatService, message: UserMessage, index: int, budget: AudioBudget) -> Any:
    audios = (
        [part for part in message.content if isinstance(part, AudioPart)] if isinstance(message.content, list) else []
    )
    if len(audios) != 1 or len(audios) != len(message.content):
        raise APIError(
            400,
            f"messages[{index}]: a user turn needs exactly one input_audio part (the model "
            f"listens; it takes no typed text)",
            f"messages[{index}].content",
        )
    param = f"messages[{index}].content[0].input_audio.data"
    raw = budget.take(audios[0].input_audio.data, param)
    check_declared_format(raw, audios[0].input_audio.format, f"messages[{index}].content[0].input_audio.format")
    samples, rate = read_audio_bytes(raw, param)
    try:
        return service.clip(samples, rate)
    except VoxportError as error:
        raise APIError(400, f"{param}: {error}", param) from None


def _reply(message: AssistantMessage, index: int, model_name: str, replies: ReplyStore) -> str | tuple[int, ...]:
    """An earlier reply: the ids kept for its audio.id, else its text."""
    if message.audio is not None:
        stored = replies.get(message.audio.id)
        param = f"messages[{index}].audio.id"
        if stored is None:
            raise APIError(
                400,
                f"{param} '{message.audio.id}' is unknown or has expired (replies are kept "
                f"{replies.ttl} s): send the reply's text as content instead",
                param,
            )
        if stored.model != model_name:
            raise APIError(
                400, f"{param} '{message.audio.id}' was made by model {stored.model}, not {model_name}", param
            )
        return tuple(int(i) for i in stored.reply_ids)
    if message.content is None:
        raise APIError(400, f"messages[{index}]: an assistant turn needs content or audio.id", "messages")
    return _plain_text(message.content)
