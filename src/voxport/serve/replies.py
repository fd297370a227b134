"""Spoken replies kept server-side by their `audio.id`, so a later turn can name a reply instead of sending it
back: what is kept is what the model's cache held of the reply (text and speech codes), so a restored
conversation hears the model's own earlier speech, as the reference's multi-round chat does.

With a directory (replicas on Ray Serve), each reply is also a file there (<id>.json, written atomically), so any
replica that sees the directory continues any conversation, and a restarted deployment still knows the ids.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from voxport.errors import InputError
from voxport.runtime.files import replaced_atomically, sweep_stale

REPLY_TTL_SECONDS = 3600  # OpenAI keeps audio replies for an hour too
REPLY_CAPACITY = 4096  # at most this many replies (a few KB each): memory stays bounded
_REPLY_FILE = re.compile(r"audio_[0-9a-f]{32}\.json")  # the only names read back (never a temporary's)


@dataclass(frozen=True)
class StoredReply:
    model: str  # the served model that made it: only that model can take it back
    reply_ids: np.ndarray  # int32 ids, as ChatRound.reply_ids
    transcript: str
    expires_at: int  # Unix seconds


class ReplyStore:
    """Replies by id; each expires after `ttl` seconds, and the oldest go first beyond `capacity` (in memory;
    in `directory`, expired files are removed as new ones come)."""

    def __init__(
        self,
        ttl: int = REPLY_TTL_SECONDS,
        capacity: int = REPLY_CAPACITY,
        clock: Callable[[], float] = time.time,
        directory: Path | None = None,
    ):
        self.ttl, self.capacity, self._clock, self.directory = ttl, capacity, clock, directory
        self._replies: OrderedDict[str, StoredReply] = OrderedDict()
        self._lock = threading.Lock()
        if directory is not None:
            try:
                directory.mkdir(parents=True, exist_ok=True)
                sweep_stale(directory)
            except OSError as error:
                raise InputError(f"replies directory {directory} cannot be used: {error.strerror or error}") from None

    def add(self, model: str, reply_ids: Sequence[int], transcript: str) -> tuple[str, int]:
        """Keep a reply; its new id and when it expires."""
        reply_id = f"audio_{uuid.uuid4().hex}"
        expires_at = int(self._clock()) + self.ttl
        reply = StoredReply(model, np.asarray(reply_ids, dtype=np.int32), transcript, expires_at)
        if self.directory is not None:
            self._write(reply_id, reply)
        with self._lock:
            self._forget_expired()
            self._replies[reply_id] = reply
            while len(self._replies) > self.capacity:
                self._replies.popitem(last=False)
        return reply_id, expires_at

    def get(self, reply_id: str) -> StoredReply | None:
        """The reply, or None when it is unknown or has expired."""
        with self._lock:
            self._forget_expired()
            known = self._replies.get(reply_id)
        if known is None and self.directory is not None:
            known = self._read(reply_id)
        return known

    def _write(self, reply_id: str, reply: StoredReply) -> None:
        """The reply as a file, after the expired ones are removed (the directory stays bounded by the TTL)."""
        now = self._clock()
        for path in self.directory.iterdir():
            if _REPLY_FILE.fullmatch(path.name) and (stored := _load(path)) is not None and stored.expires_at <= now:
                path.unlink(missing_ok=True)
        record = {**asdict(reply), "reply_ids": reply.reply_ids.tolist()}
        with replaced_atomically(self.directory / f"{reply_id}.json") as temporary:
            temporary.write_text(json.dumps(record))

    def _read(self, reply_id: str) -> StoredReply | None:
        if not _REPLY_FILE.fullmatch(f"{reply_id}.json"):
            return None
        stored = _load(self.directory / f"{reply_id}.json")
        return stored if stored is not None and stored.expires_at > self._clock() else None

    def __len__(self) -> int:
        return len(self._replies)

    def _forget_expired(self) -> None:
        now = self._clock()
        while self._replies and next(iter(self._replies.values())).expires_at <= now:
            self._replies.popitem(last=False)


def _load(path: Path) -> StoredReply | None:
    """A reply file, or None when it is gone or unreadable (another replica removed it as expired)."""
    with suppress(OSError, ValueError, TypeError, KeyError):
        record = json.loads(path.read_text())
        return StoredReply(
            record["model"],
            np.asarray(record["reply_ids"], dtype=np.int32),
            record["transcript"],
            int(record["expires_at"]),
        )
    return None
