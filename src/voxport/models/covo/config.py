"""Covo-Audio-Chat's config.json: a Qwen2 LLM config and a Whisper encoder config, plus how they connect."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from transformers import Qwen2Config, WhisperConfig

from voxport.errors import CheckpointError

MODEL_TYPE = "covo_audio"


@dataclass
class CovoConfig:
    llm: Qwen2Config
    encoder: WhisperConfig
    audio_token_index: int  # first audio-code id: code = id - audio_token_index
    adapter_downsample: int  # encoder frames per LLM audio feature
    whisper_feats_dim: int

    @classmethod
    def from_directory(cls, directory: Path) -> CovoConfig:
        path = directory / "config.json"
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise CheckpointError(f"cannot read {path}: {error}") from None
        if raw.get("model_type") != MODEL_TYPE:
            raise CheckpointError(
                f"{directory} holds a '{raw.get('model_type')}' checkpoint: expected model_type '{MODEL_TYPE}'"
            )
        try:
            return cls(
                llm=Qwen2Config.from_dict(raw["llm_config"]),
                encoder=WhisperConfig.from_dict(raw["encoder_config"]),
                audio_token_index=int(raw["audio_token_index"]),
                adapter_downsample=int(raw.get("adapter_downsample", 8)),
                whisper_feats_dim=int(raw.get("whisper_feats_dim", raw["encoder_config"]["d_model"])),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{path} is not a Covo-Audio config: {error!r} is missing or invalid") from None

    def to_dict(self) -> dict:
        """The on-disk form the real checkpoint uses."""
        return {
            "architectures": ["CovoAudioForCausalLM"],
            "model_type": MODEL_TYPE,
            "llm_config": self.llm.to_dict(),
            "_llm_config_type": "qwen2",
            "encoder_config": self.encoder.to_dict(),
            "_encoder_config_type": "whisper",
            "audio_token_index": self.audio_token_index,
            "adapter_downsample": self.adapter_downsample,
            "whisper_feats_dim": self.whisper_feats_dim,
            "dtype": "bfloat16",
        }
