"""What one request may ask of a server: the defaults `voxport serve` shows in --help and the app enforces."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Limits:
    max_input_chars: int = 4096
    max_audio_bytes: int = 25 * 2**20
    max_seconds: float = 60.0  # the most a speech request may set max_seconds (each text chunk's cap) to
    max_json_bytes: int = 2**20  # a JSON body besides its audio

    def chat_body_bytes(self) -> int:
        """A chat body's limit: its audio as base64 (4 bytes for every 3), and the rest."""
        return -(-self.max_audio_bytes // 3) * 4 + self.max_json_bytes
