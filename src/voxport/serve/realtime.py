"""WebSocket /v1/realtime on any model that answers audio: the part of OpenAI's Realtime API (GA event names)
that the openai SDK's `client.realtime.connect()` and the agent frameworks' Realtime plugins use.

Audio goes up in the session's input format; a turn ends when the client commits it or when server-side voice
activity detection hears the speaker stop. Each socket keeps one conversation in the model's cache, so turn N
processes only turn N's audio (a session.update that changes what the model reads reopens it with the history
so far). Each reply is one job on the model's worker, the same queue HTTP requests wait in; `response.cancel`,
a new turn that interrupts, or a closed socket stops it at its next step. Every malformed or unsupported
client event is answered with an `error` event in OpenAI's shape, and the session goes on.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, cast

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from voxport.audio.io import resample
from voxport.audio.voice_activity import SpeechDetector
from voxport.errors import VoxportError
from voxport.models.base import ChatRound, ChatSettings, Conversation
from voxport.serve.errors import APIError
from voxport.serve.limits import Limits
from voxport.serve.metrics import Metrics
from voxport.serve.realtime_config import PCM16, EventError, SessionConfig
from voxport.serve.streams import AsyncChunks
from voxport.serve.workers import ChunkSink, Job, QueueFull, step_boundary
from voxport.services.chat import ChatService

ENDPOINT = "/v1/realtime"
RATE = PCM16.rate  # the input buffer holds float32 samples at 24 kHz, whatever format they came in
MAX_APPEND_BYTES = 15 * 2**20  # the most audio one append event may carry (OpenAI's limit)
AUDIO_DELTA_SECONDS = 0.2  # audio per response.output_audio.delta
SUBPROTOCOL_KEY = "openai-insecure-api-key."  # how browsers send the API key (they cannot set headers)


@dataclass(frozen=True)
class Answer:
    """A turn's round, from the worker; `replayed`: the conversation was reopened first, its history read again."""

    turn: ChatRound
    replayed: bool


class RealtimeSession:
    """One socket's session: its audio buffer, its turns, its conversation, the reply in progress."""

    def __init__(self, socket: WebSocket, served: Any, limits: Limits, count_error: Callable[[str], None]):
        self.socket, self.served, self.limits, self.count_error = socket, served, limits, count_error
        self.service: ChatService = served.service
        self.config = SessionConfig()
        if served.speech_error:  # a model that cannot speak answers in text
            self.config = replace(self.config, output_modalities=("text",))
        self.session_id = _id("sess")
        self.buffer: list[np.ndarray] = []  # uncommitted audio (float32 at RATE), in pieces as appended
        self.heard = 0  # samples appended in the session so far (VAD times count from the first)
        self.pending: list[np.ndarray] = []  # committed user audio not answered yet
        self.last_item: str | None = None
        self.detector: SpeechDetector | None = None
        self.detector_for: dict[str, Any] | None = None  # the turn_detection settings it was built with
        self.detector_origin = 0  # the session sample its times count from
        self.speech_item: str | None = None  # the user item VAD heard start
        self.reply: asyncio.Task[None] | None = None
        self.job: Job | None = None
        self.stop_reason = "client_cancelled"
        self.event_id: str | None = None  # the client event being handled, named by its error
        # the worker's side: touched only by this session's jobs, which the model's worker runs one at a time
        self.conversation: Conversation | None = None
        self.conversation_settings: ChatSettings | None = None
        self.seed: int | None = None
        self.answered: list[tuple[Any, tuple[int, ...]]] = []  # each answered turn's clip and reply ids

    async def run(self) -> None:
        await self._follow_turn_detection()
        await self.send("session.created", session=self.config.describe(self.served.name, self.session_id))
        try:
            while True:
                message = await self.socket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                try:
                    await self.handle(message)
                except EventError as error:
                    await self.error(error)
        except WebSocketDisconnect:  # closed while an event was being answered
            pass
        finally:
            await self._abandon_reply()

    async def handle(self, message: Mapping[str, Any]) -> None:
        self.event_id = None
        text = message.get("text")
        if text is None:
            raise EventError("events are JSON text messages, not binary ones", code="invalid_event")
        try:
            event = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as error:
            raise EventError(f"the event is not valid JSON: {error}", code="invalid_json") from None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise EventError("an event must be a JSON object with a string 'type'", "type", "invalid_event")
        self.event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        handler = self.HANDLERS.get(event["type"])
        if handler is None:
            raise EventError(
                f"unknown or unsupported event type '{event['type']}': expected one of {', '.join(self.HANDLERS)}",
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

    async def session_update(self, event: dict[str, Any]) -> None:
        config = self.config.updated(event.get("session"))
        if config.speaks and self.served.speech_error:
            raise EventError(
                f"model {self.served.name} cannot speak: {self.served.speech_error}: ask for output_modalities "
                '["text"]',
                "session.output_modalities",
            )
        self.config = config
        await self._follow_turn_detection()
        await self.send("session.updated", session=config.describe(self.served.name, self.session_id))

    async def append(self, event: dict[str, Any]) -> None:
        raw = _base64(event.get("audio"), "audio", MAX_APPEND_BYTES)
        fresh = await asyncio.to_thread(self._heard, raw, "audio")
        if (self._buffered() + len(fresh)) * 2 > self.limits.max_audio_bytes:
            raise EventError(
                f"this append brings the audio buffer to {(self._buffered() + len(fresh)) * 2} bytes as pcm16 at "
                f"{RATE} Hz; a turn holds at most {self.limits.max_audio_bytes}: commit turns more often",
                "audio",
                "audio_too_large",
            )
        self.buffer.append(fresh)
        self.heard += len(fresh)
        if self.detector is not None and len(fresh):
            for edge in await asyncio.to_thread(self.detector.feed, fresh, RATE):
                at = self.detector_origin + edge.ms * RATE // 1000
                await (self._speech_started(at) if edge.started else self._speech_stopped(at))

    async def commit(self, event: dict[str, Any]) -> None:
        await self._commit(self.heard, self.speech_item or _id("item"))

    async def clear(self, event: dict[str, Any]) -> None:
        self._drop_until(self.heard)
        await self.send("input_audio_buffer.cleared")

    async def item_create(self, event: dict[str, Any]) -> None:
        item = event.get("item")
        content = item.get("content") if isinstance(item, dict) else None
        if (
            not isinstance(item, dict)
            or item.get("type") != "message"
            or item.get("role") != "user"
            or not isinstance(content, list)
            or len(content) != 1
            or not isinstance(content[0], dict)
            or content[0].get("type") != "input_audio"
        ):
            raise EventError(
                "item must be a user message with one input_audio part (the model listens; it takes no typed text)",
                "item.content",
                "unsupported_item",
            )
        if event.get("previous_item_id") not in (None, self.last_item):
            raise EventError("items are added at the end of the conversation only", "previous_item_id")
        param = "item.content[0].audio"
        raw = _base64(content[0].get("audio"), param, self.limits.max_audio_bytes)
        samples = await asyncio.to_thread(self._heard, raw, param)
        if not len(samples):
            raise EventError(f"{param} is empty", param, "invalid_audio")
        named = item.get("id")
        await self._add_turn(samples, named if isinstance(named, str) else _id("item"))

    async def response_create(self, event: dict[str, Any]) -> None:
        if self._replying():
            raise EventError(
                "a response is in progress: cancel it first", code="conversation_already_has_active_response"
            )
        response = event.get("response", {})
        if not isinstance(response, dict) or set(response) - {"conversation", "metadata"}:
            raise EventError("per-response settings are not supported here: set them with session.update", "response")
        if not self.pending:
            raise EventError(
                "there is no user audio to answer: append and commit audio, or create an input_audio item",
                code="no_user_turn",
            )
        audio, self.pending = np.concatenate(self.pending), []
        clip = await asyncio.to_thread(self.service.clip, audio, RATE)
        config, chunks = self.config, AsyncChunks()
        try:
            job = self.served.worker.submit(Job(self._turn_work(clip, config), chunks=chunks))
        except QueueFull:
            raise EventError(
                f"model {self.served.name} is busy: its queue is full, try again shortly",
                code="queue_full",
                kind="rate_limit_error",
            ) from None
        self.job, self.stop_reason = job, "client_cancelled"
        self.reply = asyncio.create_task(self._respond(job, chunks, config, response.get("metadata")))

    async def response_cancel(self, event: dict[str, Any]) -> None:
        if not self._replying():
            raise EventError("there is no response in progress to cancel", code="response_cancel_not_active")
        await self._stop_reply("client_cancelled")

    HANDLERS: dict[str, Callable[[RealtimeSession, dict[str, Any]], Awaitable[None]]] = {
        "session.update": session_update,
        "input_audio_buffer.append": append,
        "input_audio_buffer.commit": commit,
        "input_audio_buffer.clear": clear,
        "conversation.item.create": item_create,
        "response.create": response_create,
        "response.cancel": response_cancel,
    }

    # turns

    def _heard(self, raw: bytes, param: str) -> np.ndarray:
        """Float32 samples at RATE of audio in the session's input format."""
        samples = self.config.input_format.decode(raw, param)
        return resample(samples, self.config.input_format.rate, RATE)

    async def _follow_turn_detection(self) -> None:
        """A detector for the session's turn detection settings (Silero loads off the event loop)."""
        vad = self.config.turn_detection
        if vad == self.detector_for:
            return
        self.detector, self.detector_for, self.detector_origin = None, vad, self.heard
        if vad is not None:
            self.detector = await asyncio.to_thread(
                SpeechDetector, vad["threshold"], vad["silence_duration_ms"], vad["prefix_padding_ms"]
            )

    async def _speech_started(self, at: int) -> None:
        self._drop_until(at)  # what came before the speech (and its padding) is not part of the turn
        self.speech_item = _id("item")
        await self.send("input_audio_buffer.speech_started", audio_start_ms=_ms(at), item_id=self.speech_item)
        assert self.config.turn_detection is not None
        if self.config.turn_detection["interrupt_response"] and self._replying():
            await self._stop_reply("turn_detected")

    async def _speech_stopped(self, at: int) -> None:
        item_id = self.speech_item or _id("item")
        await self.send("input_audio_buffer.speech_stopped", audio_end_ms=_ms(at), item_id=item_id)
        await self._commit(at, item_id)
        assert self.config.turn_detection is not None
        if self.config.turn_detection["create_response"] and not self._replying():
            await self.response_create({})

    async def _commit(self, until: int, item_id: str) -> None:
        """The buffered audio up to session sample `until` becomes a user turn."""
        start = self.heard - self._buffered()
        if until - start < 1:
            raise EventError(
                "the input audio buffer is empty: append audio before committing",
                code="input_audio_buffer_commit_empty",
            )
        whole = np.concatenate(self.buffer)
        self.buffer = [whole[until - start :]]
        self.speech_item = None
        await self.send("input_audio_buffer.committed", item_id=item_id, previous_item_id=self.last_item)
        await self._add_turn(whole[: until - start], item_id)

    def _drop_until(self, until: int) -> None:
        start = self.heard - self._buffered()
        if until > start:
            self.buffer = [np.concatenate(self.buffer)[until - start :]] if self.buffer else []
        if until >= self.heard:
            self.speech_item = None

    def _buffered(self) -> int:
        return sum(len(piece) for piece in self.buffer)

    async def _add_turn(self, samples: np.ndarray, item_id: str) -> None:
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        await self._announce_item(item)
        self.pending.append(samples)

    async def _announce_item(self, item: dict[str, Any]) -> None:
        for kind in ("conversation.item.created", "conversation.item.added"):
            await self.send(kind, item=item, previous_item_id=self.last_item)
        if item["status"] == "completed":
            await self.send("conversation.item.done", item=item, previous_item_id=self.last_item)
        self.last_item = item["id"]

    # replies

    def _replying(self) -> bool:
        return self.reply is not None and not self.reply.done()

    async def _respond(self, job: Job, chunks: AsyncChunks, config: SessionConfig, metadata: Any) -> None:
        """The reply's events: its text as the model makes it, its audio as soon as it is rendered, then
        response.done with the status and usage."""
        response_id, item_id = _id("resp"), _id("item")
        speaking, modalities = config.speaks, list(config.output_modalities)
        base = {
            "id": response_id,
            "object": "realtime.response",
            "conversation_id": self.session_id,
            "output_modalities": modalities,
            "metadata": metadata,
            "audio": {"output": {"format": config.output_format.describe(), "voice": config.voice}},
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
        await self._announce_item(item)
        where = {"response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0}
        kind, key = ("output_audio_transcript", "transcript") if speaking else ("output_text", "text")
        part = {"type": "output_audio" if speaking else "output_text", key: ""}
        await self.send("response.content_part.added", **where, part=part)
        status, details, turn, text, replayed = "completed", None, None, "", False
        while True:
            piece = await chunks.get()
            if isinstance(piece, str):
                text += piece
                await self.send(f"response.{kind}.delta", **where, delta=piece)
            elif isinstance(piece, Answer):
                if piece.turn.text != text and piece.turn.text.startswith(text):  # what the deltas held back
                    await self.send(f"response.{kind}.delta", **where, delta=piece.turn.text[len(text) :])
                turn, text, replayed = piece.turn, piece.turn.text, piece.replayed
                break
            else:  # None: stopped here, or the job failed
                status, details = self._ended(job)
                break
        if turn is not None and speaking and turn.speech is not None:
            audio = await asyncio.to_thread(self._spoken, turn.speech, config)
            step = int(AUDIO_DELTA_SECONDS * config.output_format.rate) * config.output_format.sample_bytes
            for start in range(0, len(audio), step):
                if job.cancelled.is_set():
                    break
                delta = base64.b64encode(audio[start : start + step]).decode()
                await self.send("response.output_audio.delta", **where, delta=delta)
            await self.send("response.output_audio.done", **where)
        if job.cancelled.is_set():
            status, details = "cancelled", {"type": "cancelled", "reason": self.stop_reason}
        elif turn is not None and not turn.stopped:
            status, details = "incomplete", {"type": "incomplete", "reason": "max_output_tokens"}
        await self.send(f"response.{kind}.done", **where, **{key: text})
        await self.send("response.content_part.done", **where, part={**part, key: text})
        done_item = {
            **item,
            "status": "completed" if status == "completed" else "incomplete",
            "content": [{**part, key: text}],
        }
        await self.send("response.output_item.done", response_id=response_id, output_index=0, item=done_item)
        await self.send("conversation.item.done", item=done_item, previous_item_id=None)
        usage = _usage(turn, replayed)
        response = {**base, "status": status, "status_details": details, "output": [done_item], "usage": usage}
        await self.send("response.done", response=response)

    def _ended(self, job: Job) -> tuple[str, dict[str, Any]]:
        """Why a reply ended without its round: stopped, or what the job failed with."""
        if job.cancelled.is_set():
            return "cancelled", {"type": "cancelled", "reason": self.stop_reason}
        error = job.future.exception() if job.future.done() else None
        if isinstance(error, (VoxportError, APIError)):
            failure = {"type": "invalid_request_error", "message": str(error)}
        else:
            failure = {"type": "server_error", "message": f"the reply failed: {type(error).__name__}: {error}"}
        return "failed", {"type": "failed", "error": failure}

    def _spoken(self, speech: np.ndarray, config: SessionConfig) -> bytes:
        return config.output_format.encode(resample(speech, self.service.speech_rate, config.output_format.rate))

    def _turn_work(self, clip: Any, config: SessionConfig) -> Callable[[list[Job]], None]:
        """The worker thread's side of one reply: the session's conversation answers `clip`, its text going out
        as tokens come, then its round. The conversation is (re)opened with the turns answered so far when it
        has none, or when the settings the model reads have changed."""

        def work(jobs: list[Job]) -> None:
            job = jobs[0]
            chunks = cast(ChunkSink, job.chunks)
            settings, replayed = config.settings(self.seed), False
            if self.conversation is None or settings != self.conversation_settings:
                replayed = bool(self.answered)
                self.conversation = None
                conversation = self.service.open(settings, self.answered)
                self.seed = conversation.seed
                self.conversation, self.conversation_settings = conversation, replace(settings, seed=self.seed)
            text = self.service.reply_text()

            def on_token(ids: list[int]) -> None:
                step_boundary(jobs, len(ids))
                if delta := text.add(ids):
                    chunks.put(delta)

            try:
                turn = self.conversation.say(clip, on_token=on_token)
            except BaseException:
                self.conversation = None  # its cache holds this turn with no reply: reopened with the history
                raise
            self.answered.append((clip, tuple(turn.reply_ids)))
            job.future.set_result(turn)
            chunks.put(Answer(turn, replayed))

        return work

    async def _stop_reply(self, reason: str) -> None:
        """Stop the reply in progress: its job stops at its next step (or is skipped, still queued), and the
        client hears response.done now, without waiting for the worker."""
        assert self.job is not None and self.job.chunks is not None
        self.stop_reason = reason
        self.job.cancelled.set()
        self.job.chunks.put(None)
        if self.reply is not None:
            await self.reply

    async def _abandon_reply(self) -> None:
        """The socket closed: the reply's job stops at its next step, and nothing more is sent."""
        if self.job is not None:
            self.job.cancelled.set()
        if self.reply is not None and not self.reply.done():
            self.reply.cancel()
        if self.reply is not None:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                await self.reply

    # sending

    async def send(self, kind: str, **fields: Any) -> None:
        if WebSocketState.DISCONNECTED not in (self.socket.application_state, self.socket.client_state):
            await self.socket.send_text(json.dumps({"type": kind, "event_id": _id("event"), **fields}))

    async def error(self, error: EventError) -> None:
        self.count_error(error.code or error.kind)
        body = {
            "type": error.kind,
            "code": error.code,
            "message": error.message,
            "param": error.param,
            "event_id": self.event_id,
        }
        await self.send("error", error=body)


async def serve_session(
    socket: WebSocket,
    served_model: Callable[[str], Any],
    api_key: str | None,
    limits: Limits,
    metrics: Metrics,
) -> None:
    """One socket, from its handshake to its close: the key checked and the model found before it is accepted
    (else the handshake is refused with OpenAI's error body), then the session."""
    key, subprotocol = api_key_offered(socket)
    started = time.perf_counter()
    status = "101"
    try:
        if api_key and key != api_key:
            raise APIError(
                401,
                "missing or wrong API key: send Authorization: Bearer <key>, or the subprotocol "
                f"{SUBPROTOCOL_KEY}<key>",
                code="invalid_api_key",
            )
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
        await RealtimeSession(socket, served, limits, lambda kind: metrics.errors.labels(ENDPOINT, kind).inc()).run()
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


def _ms(samples: int) -> int:
    return samples * 1000 // RATE


def _base64(data: Any, param: str, limit: int) -> bytes:
    if not isinstance(data, str):
        raise EventError(f"{param} must be base64 audio in the session's input format", param, "invalid_audio")
    if len(data) // 4 * 3 > limit + 3:
        raise EventError(
            f"{param} holds about {len(data) // 4 * 3} bytes of audio; the limit is {limit}", param, "audio_too_large"
        )
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise EventError(f"{param} is not valid base64", param, "invalid_audio") from None


def _usage(turn: ChatRound | None, replayed: bool) -> dict[str, Any] | None:
    """OpenAI's usage: prompt positions (the history the cache held, apart from what this turn read; history
    replayed into a reopened conversation was read again) and reply tokens."""
    if turn is None:
        return None
    before, fresh = turn.cache_positions_before, turn.prefill_positions
    cached, fresh = (0, before + fresh) if replayed else (before, fresh)
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
