"""POST /v1/chat/completions (Covo-Audio-Chat): OpenAI's audio-chat shape; the history is replayed into the
model's cache (user audio and the replies given then), and the last user audio is answered."""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from voxport.audio.io import resample
from voxport.errors import VoxportError
from voxport.models.covo import ChatSettings
from voxport.models.covo.frontend import INPUT_RATE, SpeechClip, prepare_clip
from voxport.serve.audio_formats import decode_base64_audio, encode, read_audio_bytes, supported_formats
from voxport.serve.errors import APIError
from voxport.serve.workers import Job


class ChatBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[dict]
    modalities: list[str] = ["text"]
    audio: dict | None = None  # {"voice": ..., "format": "wav"}: the format of spoken replies
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stream: bool = False


@dataclass(frozen=True)
class ChatJob:
    history: list[tuple[SpeechClip, str]]  # earlier user clips and the replies given to them
    clip: SpeechClip  # the turn to answer
    settings: ChatSettings
    audio_format: str


def chat_job(body: ChatBody, max_audio_bytes: int, default_tokens: int) -> ChatJob:
    if body.stream:
        raise APIError(400, "streamed chat completions are not supported: set stream to false", "stream")
    if not set(body.modalities) <= {"text", "audio"} or "text" not in body.modalities:
        raise APIError(400, "modalities must be [\"text\"] or [\"text\", \"audio\"]", "modalities")
    audio_format = (body.audio or {}).get("format", "wav")
    if "audio" in body.modalities and audio_format not in supported_formats():
        raise APIError(400, f"audio.format '{audio_format}' is not available here", "audio.format")
    turns = [m for m in body.messages if isinstance(m, dict) and m.get("role") in ("user", "assistant")]
    if not turns or turns[-1]["role"] != "user":
        raise APIError(400, "messages must end with a user message holding input_audio", "messages")
    history, pending = [], None
    for index, message in enumerate(turns):
        if message["role"] == "user":
            if pending is not None:
                raise APIError(400, f"messages[{index}]: two user turns in a row; put the reply between them",
                               "messages")
            pending = _user_clip(message, index, max_audio_bytes)
        else:
            if pending is None:
                raise APIError(400, f"messages[{index}]: an assistant reply needs a user turn before it", "messages")
            history.append((pending, _reply_text(message)))
            pending = None
    tokens = body.max_completion_tokens or body.max_tokens or default_tokens
    try:
        settings = ChatSettings(
            mode="a2ta" if "audio" in body.modalities else "a2t", max_new_tokens=tokens,
            greedy=body.temperature == 0, temperature=body.temperature or 0.5, top_p=body.top_p or 0.9,
            seed=body.seed,
        )
    except VoxportError as error:
        raise APIError(400, str(error), "max_tokens") from None
    return ChatJob(history, pending, settings, audio_format)


def run_chat(model, jobs: list[Job]) -> None:
    job = jobs[0]
    request: ChatJob = job.payload
    conversation = model.chat(request.settings)
    for clip, reply in request.history:
        conversation.remember(clip, reply)
    job.future.set_result(conversation.say(request.clip))


def completion(model_name: str, turn, audio_format: str, sample_rate: int | None) -> dict:
    """OpenAI's chat.completion object for one answered round."""
    message = {"role": "assistant", "content": turn.text}
    if turn.speech is not None:
        data = base64.b64encode(encode(turn.speech, sample_rate, audio_format)).decode()
        message["audio"] = {"id": f"audio_{uuid.uuid4().hex}", "data": data, "expires_at": int(time.time()) + 3600,
                            "transcript": turn.text}
    generated = len(turn.text_token_ids) + len(turn.audio_codes)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
        "model": model_name,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop" if turn.stopped else "length"}],
        "usage": {"prompt_tokens": turn.cache_positions_before + turn.prefill_positions,
                  "completion_tokens": generated,
                  "total_tokens": turn.cache_positions_before + turn.prefill_positions + generated},
    }


def _user_clip(message: dict, index: int, max_audio_bytes: int) -> SpeechClip:
    parts = message.get("content")
    audios = [part for part in parts if isinstance(part, dict) and part.get("type") == "input_audio"] \
        if isinstance(parts, list) else []
    if len(audios) != 1:
        raise APIError(400, f"messages[{index}]: a user turn needs exactly one input_audio part (Covo-Audio-Chat "
                            f"listens; it takes no typed text)", f"messages[{index}].content")
    param = f"messages[{index}].content.input_audio.data"
    raw = decode_base64_audio((audios[0].get("input_audio") or {}).get("data", ""), max_audio_bytes, param)
    samples, rate = read_audio_bytes(raw, param)
    try:
        return prepare_clip(resample(samples, rate, INPUT_RATE))
    except VoxportError as error:
        raise APIError(400, f"{param}: {error}", param) from None


def _reply_text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return (message.get("audio") or {}).get("transcript", "")
