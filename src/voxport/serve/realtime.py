"""WebSocket /v1/realtime on any model that answers audio: the part of OpenAI's Realtime API (GA event names)
that the openai SDK's `client.realtime.connect()` and the agent frameworks' Realtime plugins use.

Audio goes up as pcm16 at 24 kHz; a turn ends when the client commits it or when server-side voice activity
detection hears the speaker stop. Each socket keeps one conversation in the model's cache, so turn N processes
only turn N's audio. The model's work runs on its worker thread, one job per reply; `response.cancel`, a new
turn that interrupts, or a closed socket stops the job at its next step. Every malformed or unsupported client
event is answered with an `error` event in OpenAI's shape, and the session goes on.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect

from voxport.audio.io import resample
from voxport.audio.voice_activity import SpeechDetector
from voxport.errors import VoxportError
from voxport.models.base import ChatRound, ChatSettings, Conversation
from voxport.serve.audio_formats import pcm16
from voxport.serve.errors import APIError
from voxport.serve.streams import AsyncChunks
from voxport.serve.workers import Job, JobCancelled, QueueFull, step_boundary
from voxport.services.chat import ChatService

ENDPOINT = "/v1/realtime"
SESSION_RATE = 24000  # audio/pcm at 24 kHz, both ways: the one format OpenAI's Realtime API and its clients share
MAX_APPEND_BYTES = 15 * 2**20  # the most audio one append event may carry (OpenAI's limit)
AUDIO_DELTA_BYTES = 24000 * 2 // 5  # 200 ms of pcm16 per response.output_audio.delta
SUBPROTOCOL_KEY = "openai-insecure-api-key."  # how browsers send the API key (they cannot set headers)
SERVER_VAD = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 500,
    "create_response": True,
    "interrupt_response": True,
}  # OpenAI's defaults


class EventError(Exception):
    """A client event the session refuses: an `error` event, and the session goes on."""

    def __init__(
        self, message: str, param: str | None = None, code: str | None = None, kind: str = "invalid_request_error"
    ):
        super().__init__(message)
        self.message, self.param, self.code, self.kind = message, param, code, kind


@dataclass
class SessionConfig:
    """What session.update can set; the conversation's settings are fixed by its first reply."""

    instructions: str | None = None  # the system prompt; None: the model's own persona
    output_modalities: tuple[str, ...] = ("audio",)
    turn_detection: dict | None = field(default_factory=lambda: dict(SERVER_VAD))
    max_output_tokens: int | None = None  # None ("inf"): the model's default

    def settings(self, seed: int | None = None) -> ChatSettings:
        return ChatSettings(
            mode="a2ta" if "audio" in self.output_modalities else "a2t",
            persona=self.instructions,
            max_new_tokens=self.max_output_tokens,
            seed=seed,
        )

    def describe(self, model: str, session_id: str) -> dict:
        audio_format = {"type": "audio/pcm", "rate": SESSION_RATE}
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": session_id,
            "model": model,
            "instructions": self.instructions or "",
            "output_modalities": list(self.output_modalities),
            "max_output_tokens": self.max_output_tokens or "inf",
            "audio": {
                "input": {"format": audio_format, "turn_detection": self.turn_detection},
                "output": {"format": audio_format},
            },
        }


class RealtimeSession:
    """One socket's session: its audio buffer, its turns, its conversation, the reply in progress."""

    def __init__(self, socket: WebSocket, served, max_audio_bytes: int, count_error: Callable[[str], None]):
        self.socket, self.served, self.max_audio_bytes, self.count_error = socket, served, max_audio_bytes, count_error
        self.service: ChatService = served.service
        self.config = SessionConfig()
        self.session_id = f"sess_{uuid.uuid4().hex[:20]}"
        self.buffer = bytearray()  # pcm16 at SESSION_RATE, not yet committed
        self.buffer_start_ms = 0  # where the buffer starts in the session's audio (VAD times count from 0)
        self.pending: list[np.ndarray] = []  # committed user audio (float32 at SESSION_RATE) not yet answered
        self.conversation: Conversation | None = None
        self.settings: ChatSettings | None = None
        self.answered: list[tuple[Any, ChatRound]] = []  # each finished round's clip and reply, for a reopen
        self.detector: SpeechDetector | None = None
        self.speech_item: str | None = None  # the user item VAD heard start
        self.reply: asyncio.Task | None = None
        self.job: Job | None = None
        self.last_item: str | None = None
        self._use_vad()

    async def run(self) -> None:
        await self.send("session.created", session=self.config.describe(self.served.name, self.session_id))
        try:
            while True:
                message = await self.socket.receive_text()
                try:
                    await self.handle(message)
                except EventError as error:
                    await self.error(error)
        except WebSocketDisconnect:
            pass
        finally:
            if self.job is not None:
                self.job.cancelled.set()
            if self.reply is not None:
                self.reply.cancel()

    async def handle(self, message: str) -> None:
        try:
            event = json.loads(message)
        except json.JSONDecodeError as error:
            raise EventError(f"the event is not valid JSON: {error}", code="invalid_json") from None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise EventError("an event must be a JSON object with a string 'type'", "type", "invalid_event")
        handler = self.HANDLERS.get(event["type"])
        if handler is None:
            raise EventError(
                f"unknown event type '{event['type']}': expected one of {', '.join(self.HANDLERS)}",
                "type",
                "invalid_event",
            )
        try:
            await handler(self, event)
        except APIError as error:
            raise EventError(error.message, error.param, error.code) from None
        except VoxportError as error:
            raise EventError(str(error)) from None

    # client events

    async def session_update(self, event: dict) -> None:
        session = _object(event.get("session"), "session")
        config = replace(self.config)
        if "instructions" in session:
            config.instructions = _optional_text(session["instructions"], "session.instructions")
        if "output_modalities" in session:
            modalities = session["output_modalities"]
            if modalities not in (["audio"], ["text"]):
                raise EventError('session.output_modalities must be ["audio"] or ["text"]', "session.output_modalities")
            config.output_modalities = tuple(modalities)
        if "max_output_tokens" in session:
            config.max_output_tokens = _max_tokens(session["max_output_tokens"], "session.max_output_tokens")
        audio = _object(session.get("audio", {}), "session.audio")
        for side in ("input", "output"):
            part = _object(audio.get(side, {}), f"session.audio.{side}")
            if "format" in part:
                _check_format(part["format"], f"session.audio.{side}.format")
            if side == "input" and "turn_detection" in part:
                config.turn_detection = _turn_detection(part["turn_detection"])
        fixed = ("instructions", "output_modalities", "max_output_tokens")
        if self.settings is not None and any(getattr(config, name) != getattr(self.config, name) for name in fixed):
            raise EventError(
                "instructions, output_modalities and max_output_tokens are fixed once the first reply "
                "has begun (the model has read them)",
                "session",
                "session_fixed",
            )
        self.config = config
        self._use_vad()
        await self.send("session.updated", session=config.describe(self.served.name, self.session_id))

    async def append(self, event: dict) -> None:
        data = event.get("audio")
        if not isinstance(data, str):
            raise EventError("input_audio_buffer.append needs 'audio': base64 pcm16 at 24 kHz", "audio")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise EventError("audio is not valid base64", "audio", "invalid_audio") from None
        if len(raw) % 2:
            raise EventError(
                f"audio holds {len(raw)} bytes: pcm16 audio comes in whole 2-byte samples (the session's "
                f"format is audio/pcm, 16-bit mono at {SESSION_RATE} Hz)",
                "audio",
                "invalid_audio_format",
            )
        if len(raw) > MAX_APPEND_BYTES or len(self.buffer) + len(raw) > self.max_audio_bytes:
            raise EventError(
                f"this append brings the audio buffer to {len(self.buffer) + len(raw)} bytes; the limit is "
                f"{min(self.max_audio_bytes, MAX_APPEND_BYTES)} a turn: commit turns more often",
                "audio",
                "audio_too_large",
            )
        self.buffer += raw
        if self.detector is not None and raw:
            edges = await asyncio.to_thread(self.detector.feed, _samples(raw), SESSION_RATE)
            for edge in edges:
                await (self._speech_started(edge.ms) if edge.started else self._speech_stopped(edge.ms))

    async def commit(self, event: dict) -> None:
        await self._commit(len(self.buffer))

    async def clear(self, event: dict) -> None:
        self._drop(len(self.buffer))
        await self.send("input_audio_buffer.cleared")

    async def item_create(self, event: dict) -> None:
        item = _object(event.get("item"), "item")
        content = item.get("content")
        if (
            item.get("type") != "message"
            or item.get("role") != "user"
            or not isinstance(content, list)
            or len(content) != 1
            or not isinstance(content[0], dict)
            or content[0].get("type") != "input_audio"
        ):
            raise EventError(
                "item must be a user message with one input_audio part (the model listens; it takes no typed text)",
                "item.content",
            )
        try:
            raw = base64.b64decode(content[0].get("audio") or "", validate=True)
        except (binascii.Error, ValueError):
            raise EventError("item.content[0].audio is not valid base64", "item.content[0].audio") from None
        if not raw or len(raw) % 2 or len(raw) > self.max_audio_bytes:
            raise EventError(
                f"item.content[0].audio must be pcm16 at {SESSION_RATE} Hz, at most {self.max_audio_bytes} bytes",
                "item.content[0].audio",
                "invalid_audio_format",
            )
        await self._add_turn(_samples(raw), item.get("id") or _id("item"))

    async def response_create(self, event: dict) -> None:
        if self.reply is not None and not self.reply.done():
            raise EventError(
                "a response is in progress: cancel it first", code="conversation_already_has_active_response"
            )
        if not self.pending:
            raise EventError(
                "there is no user audio to answer: append and commit audio, or create an input_audio item",
                code="no_user_turn",
            )
        response = _object(event.get("response", {}), "response")
        if "instructions" in response or "tools" in response:
            raise EventError(
                "per-response instructions and tools are not supported: set instructions with session.update",
                "response",
            )
        clip = await asyncio.to_thread(self.service.clip, np.concatenate(self.pending), SESSION_RATE)
        self.pending = []
        self.job = self._submit(self._turn_work(clip))
        self.reply = asyncio.create_task(self._respond(self.job))

    async def response_cancel(self, event: dict) -> None:
        if self.reply is None or self.reply.done():
            raise EventError("there is no response in progress to cancel", code="response_cancel_not_active")
        await self._stop_reply()

    HANDLERS: dict[str, Callable] = {
        "session.update": session_update,
        "input_audio_buffer.append": append,
        "input_audio_buffer.commit": commit,
        "input_audio_buffer.clear": clear,
        "conversation.item.create": item_create,
        "response.create": response_create,
        "response.cancel": response_cancel,
    }

    # turns

    def _use_vad(self) -> None:
        vad = self.config.turn_detection
        self.detector = (
            None
            if vad is None
            else SpeechDetector(vad["threshold"], vad["silence_duration_ms"], vad["prefix_padding_ms"])
        )

    async def _speech_started(self, ms: int) -> None:
        self.speech_item = _id("item")
        await self.send("input_audio_buffer.speech_started", audio_start_ms=ms, item_id=self.speech_item)
        if self.config.turn_detection.get("interrupt_response") and self.reply is not None and not self.reply.done():
            await self._stop_reply()

    async def _speech_stopped(self, ms: int) -> None:
        item_id = self.speech_item or _id("item")
        await self.send("input_audio_buffer.speech_stopped", audio_end_ms=ms, item_id=item_id)
        end = min(len(self.buffer), (ms - self.buffer_start_ms) * SESSION_RATE // 1000 * 2)
        await self._commit(end, item_id)
        if self.config.turn_detection.get("create_response", True):
            await self.response_create({})

    async def _commit(self, end: int, item_id: str | None = None) -> None:
        if end < 2:
            raise EventError(
                "the input audio buffer is empty: append audio before committing",
                code="input_audio_buffer_commit_empty",
            )
        samples = _samples(bytes(self.buffer[:end]))
        self._drop(end)
        await self._add_turn(samples, item_id or _id("item"), committed=True)

    def _drop(self, end: int) -> None:
        del self.buffer[:end]
        self.buffer_start_ms += end // 2 * 1000 // SESSION_RATE
        self.speech_item = None

    async def _add_turn(self, samples: np.ndarray, item_id: str, committed: bool = False) -> None:
        if committed:
            await self.send("input_audio_buffer.committed", item_id=item_id, previous_item_id=self.last_item)
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        await self.send("conversation.item.created", item=item, previous_item_id=self.last_item)
        self.pending.append(samples)
        self.last_item = item_id

    # replies

    async def _respond(self, job: Job) -> None:
        response_id, item_id = _id("resp"), _id("item")
        speaking = "audio" in self.config.output_modalities
        base = {
            "id": response_id,
            "object": "realtime.response",
            "output_modalities": list(self.config.output_modalities),
            "conversation_id": self.session_id,
        }
        await self.send("response.created", response={**base, "status": "in_progress", "output": []})
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        }
        await self.send("response.output_item.added", response_id=response_id, output_index=0, item=item)
        await self.send("conversation.item.created", item=item, previous_item_id=self.last_item)
        self.last_item = item_id
        where = {"response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0}
        kind = "output_audio_transcript" if speaking else "output_text"
        status, details, turn, text = "completed", None, None, ""
        try:
            while (delta := await job.chunks.get()) is not None:
                text += delta
                await self.send(f"response.{kind}.delta", **where, delta=delta)
            turn = await asyncio.wrap_future(job.future)
            if turn.speech is not None:
                speech = await asyncio.to_thread(resample, turn.speech, self.service.speech_rate, SESSION_RATE)
                audio = pcm16(speech)
                for start in range(0, len(audio), AUDIO_DELTA_BYTES):
                    await self.send(
                        "response.output_audio.delta",
                        **where,
                        delta=base64.b64encode(audio[start : start + AUDIO_DELTA_BYTES]).decode(),
                    )
            text = turn.text
            if not turn.stopped:
                status, details = "incomplete", {"type": "incomplete", "reason": "max_output_tokens"}
        except JobCancelled:
            status, details = (
                "cancelled",
                {"type": "cancelled", "reason": "turn_detected" if self.speech_item else "client_cancelled"},
            )
            self.conversation = None  # the cache heard a turn that has no reply: reopened from `answered` next time
        except (EventError, VoxportError, APIError) as error:
            status, details = (
                "failed",
                {"type": "failed", "error": {"type": "invalid_request_error", "message": str(error)}},
            )
        except Exception as error:
            self.conversation = None
            status, details = (
                "failed",
                {"type": "failed", "error": {"type": "server_error", "message": f"{type(error).__name__}: {error}"}},
            )
        finally:
            self.job = None
        if speaking:
            await self.send("response.output_audio.done", **where)
        await self.send(f"response.{kind}.done", **where, **{"transcript" if speaking else "text": text})
        part = {"type": "output_audio" if speaking else "output_text", ("transcript" if speaking else "text"): text}
        done_item = {**item, "status": "completed" if status == "completed" else "incomplete", "content": [part]}
        await self.send("response.output_item.done", response_id=response_id, output_index=0, item=done_item)
        await self.send(
            "response.done",
            response={
                **base,
                "status": status,
                "status_details": details,
                "output": [done_item],
                "usage": _usage(turn),
            },
        )

    def _turn_work(self, clip: Any) -> Callable[[list[Job]], None]:
        """The worker thread's side of one reply: the session's conversation answers `clip`, its text going out
        as tokens come (reopened first, with the rounds answered so far, when a reply was stopped)."""
        if self.conversation is None:
            self.settings = self.config.settings(self.settings.seed if self.settings else None)
        settings, service = self.settings, self.service

        def work(jobs: list[Job]) -> None:
            job = jobs[0]
            if self.conversation is None:
                self.conversation = service.open(settings, [(old, done.reply_ids) for old, done in self.answered])
                self.settings = replace(settings, seed=self.conversation.seed)
            text = service.reply_text()

            def on_token(ids: list[int]) -> None:
                step_boundary(jobs, len(ids))
                if delta := text.add(ids):
                    job.chunks.put(delta)

            turn = self.conversation.say(clip, on_token=on_token)
            self.answered.append((clip, turn))
            job.future.set_result(turn)
            job.chunks.put(None)

        return work

    def _submit(self, work: Callable[[list[Job]], None]) -> Job:
        try:
            return self.served.worker.submit(Job(work, chunks=AsyncChunks()))
        except QueueFull:
            raise EventError(
                f"model {self.served.name} is busy: its queue is full, try again shortly",
                code="queue_full",
                kind="rate_limit_error",
            ) from None

    async def _stop_reply(self) -> None:
        if self.job is not None:
            self.job.cancelled.set()
            self.job.chunks.put(None)  # a job skipped before it started sends no end of its own
        if self.reply is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.reply

    # sending

    async def send(self, kind: str, **fields: Any) -> None:
        await self.socket.send_text(json.dumps({"type": kind, "event_id": _id("event"), **fields}))

    async def error(self, error: EventError) -> None:
        self.count_error(error.kind)
        await self.send(
            "error",
            error={
                "type": error.kind,
                "code": error.code,
                "message": error.message,
                "param": error.param,
                "event_id": None,
            },
        )


async def serve_session(
    socket: WebSocket, served_model: Callable[[str], Any], api_key: str | None, max_audio_bytes: int, metrics
) -> None:
    """One socket, from its handshake to its close: the key checked and the model found before it is accepted
    (else the handshake is refused with OpenAI's error body), then the session."""
    key, subprotocol = api_key_offered(socket)
    started = time.perf_counter()
    status = "101"
    try:
        if api_key and key != api_key:
            raise APIError(401, "missing or wrong API key: send Authorization: Bearer <key>", code="invalid_api_key")
        served = served_model(socket.query_params.get("model", ""))
    except APIError as error:
        status = str(error.status)
        metrics.errors.labels(ENDPOINT, status).inc()
        await socket.send_denial_response(error.response())
        return
    finally:
        metrics.requests.labels(ENDPOINT, status).inc()
    await socket.accept(subprotocol)
    try:
        await RealtimeSession(
            socket, served, max_audio_bytes, lambda kind: metrics.errors.labels(ENDPOINT, kind).inc()
        ).run()
    finally:
        metrics.latency.labels(ENDPOINT).observe(time.perf_counter() - started)


def api_key_offered(socket: WebSocket) -> tuple[str | None, str | None]:
    """The API key the client sent (Authorization: Bearer, or the browsers' subprotocol) and the subprotocol to
    accept ("realtime" when the client offered it)."""
    offered = [part.strip() for part in socket.headers.get("sec-websocket-protocol", "").split(",") if part.strip()]
    key = next((part[len(SUBPROTOCOL_KEY) :] for part in offered if part.startswith(SUBPROTOCOL_KEY)), None)
    authorization = socket.headers.get("authorization", "")
    if authorization.startswith("Bearer "):
        key = authorization[len("Bearer ") :]
    return key, "realtime" if "realtime" in offered else None


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def _samples(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, "<i2").astype(np.float32) / 32768


def _object(value: Any, param: str) -> dict:
    if not isinstance(value, dict):
        raise EventError(f"{param} must be a JSON object", param)
    return value


def _optional_text(value: Any, param: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise EventError(f"{param} must be a string", param)
    return value or None


def _max_tokens(value: Any, param: str) -> int | None:
    if value == "inf":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise EventError(f'{param} must be a positive integer or "inf"', param)
    return value


def _check_format(value: Any, param: str) -> None:
    audio = _object(value, param)
    if audio.get("type") != "audio/pcm" or audio.get("rate", SESSION_RATE) != SESSION_RATE:
        raise EventError(
            f"{param}: {json.dumps(audio)} is not available here: expected "
            f'{{"type": "audio/pcm", "rate": {SESSION_RATE}}} (pcm16 mono)',
            param,
            "unsupported_audio_format",
        )


def _turn_detection(value: Any) -> dict | None:
    param = "session.audio.input.turn_detection"
    if value is None:
        return None
    chosen = _object(value, param)
    if chosen.get("type") != "server_vad":
        raise EventError(f"{param}.type must be server_vad (or turn_detection null for manual commits)", param)
    unknown = set(chosen) - set(SERVER_VAD) - {"idle_timeout_ms"}
    if unknown:
        raise EventError(f"{param}: unknown field {', '.join(sorted(unknown))}", param)
    merged = {**SERVER_VAD, **{key: value for key, value in chosen.items() if value is not None}}
    if not 0 < merged["threshold"] < 1:
        raise EventError(f"{param}.threshold must be in (0, 1)", f"{param}.threshold")
    for name in ("prefix_padding_ms", "silence_duration_ms"):
        if isinstance(merged[name], bool) or not isinstance(merged[name], int) or merged[name] < 0:
            raise EventError(f"{param}.{name} must be a non-negative integer", f"{param}.{name}")
    return merged


def _usage(turn: ChatRound | None) -> dict | None:
    """OpenAI's usage: prompt positions (cached history apart from this turn's own) and reply tokens."""
    if turn is None:
        return None
    cached, fresh = turn.cache_positions_before, turn.prefill_positions
    text, audio = len(turn.text_token_ids), len(turn.audio_codes)
    return {
        "total_tokens": cached + fresh + text + audio,
        "input_tokens": cached + fresh,
        "output_tokens": text + audio,
        "input_token_details": {
            "cached_tokens": cached,
            "audio_tokens": turn.audio_features,
            "text_tokens": cached + fresh - turn.audio_features,
        },
        "output_token_details": {"text_tokens": text, "audio_tokens": audio},
    }
