"""Spoken replies kept server-side by their `audio.id`, so a later turn can name a reply instead of sending it
back: what is kept is what the model's cache held of the reply (text and speech codes), so a restored
conversation hears the model's own earlier speech, as the reference's multi-round chat does."""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

REPLY_TTL_SECONDS = 3600  # OpenAI keeps audio replies for an hour too
REPLY_CAPACITY = 4096  # at most this many replies (a few KB each): memory stays bounded


@dataclass(frozen=True)
class StoredReply:
    model: str  # the served model that made it: only that model can take it back
    reply_ids: np.ndarray  # int32 ids, as ChatRound.reply_ids
    transcript: str
    expires_at: int  # Unix seconds


class ReplyStore:
    """Replies by id; each expires after `ttl` seconds, and the oldest go first beyond `capacity`."""

    def __init__(self, ttl: int = REPLY_TTL_SECONDS, capacity: int = REPLY_CAPACITY,
                 clock: Callable[[], float] = time.time):
        self.ttl, self.capacity, self._clock = ttl, capacity, clock
        self._replies: OrderedDict[str, StoredReply] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, model: str, reply_ids: Sequence[int], transcript: str) -> tuple[str, int]:
        """Keep a reply; its new id and when it expires."""
        reply_id = f"audio_{uuid.uuid4().hex}"
        expires_at = int(self._clock()) + self.ttl
        with self._lock:
            self._forget_expired()
            self._replies[reply_id] = StoredReply(model, np.asarray(reply_ids, dtype=np.int32), transcript, expires_at)
            while len(self._replies) > self.capacity:
                self._replies.popitem(last=False)
        return reply_id, expires_at

    def get(self, reply_id: str) -> StoredReply | None:
        """The reply, or None when it is unknown or has expired."""
        with self._lock:
            self._forget_expired()
            return self._replies.get(reply_id)

    def __len__(self) -> int:
        return len(self._replies)

    def _forget_expired(self) -> None:
        now = self._clock()
        while self._replies and next(iter(self._replies.values())).expires_at <= now:
            self._replies.popitem(last=False)
