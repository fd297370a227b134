"""token2wav's architecture, read from the reference's config layout (model.token2latent, model.wavegan)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from voxport.errors import CheckpointError


@dataclass(frozen=True)
class Token2LatentConfig:
    token_vocab_size: int = 16384
    token_input_dim: int = 512
    upsample_factor: int = 4  # 25 Hz codes -> 100 Hz latents
    z_dim: int = 64
    spkr_embed_dim: int = 1024
    num_layers: int = 12
    hidden_size: int = 1024
    ffn_hidden_size: int = 4096
    num_heads: int = 16


@dataclass(frozen=True)
class VocoderConfig:
    latent_dim: int = 64
    upsample_rates: tuple[int, ...] = (5, 3, 2, 2, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (10, 6, 4, 4, 4, 4)
    upsample_initial_channel: int = 1536
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    snake_logscale: bool = True


@dataclass(frozen=True)
class Token2WavConfig:
    """Defaults are the released model's; a token2wav/config.json beside the weights overrides them."""

    sample_rate: int = 24000
    token2latent: Token2LatentConfig = field(default_factory=Token2LatentConfig)
    vocoder: VocoderConfig = field(default_factory=VocoderConfig)
    ode_steps: int = 10  # time points: 9 midpoint steps
    cfg_alpha: float = 1.0

    @classmethod
    def from_file(cls, path: Path) -> Token2WavConfig:
        try:
            raw = json.loads(path.read_text())
            transformer = raw["model"]["token2latent"]["transformer"]
            latent = {k: v for k, v in raw["model"]["token2latent"].items() if k in Token2LatentConfig.__annotations__}
            wavegan = raw["model"]["wavegan"]
            if wavegan.get("resblock", "1") != "1" or wavegan.get("activation", "snakebeta") != "snakebeta":
                raise ValueError("only resblock '1' with snakebeta activations is supported")
            return cls(
                sample_rate=int(raw["data"]["audio"]["sample_rate"]),
                token2latent=Token2LatentConfig(
                    **latent,
                    **{key: transformer[key] for key in ("num_layers", "hidden_size", "ffn_hidden_size", "num_heads")},
                ),
                vocoder=VocoderConfig(
                    latent_dim=int(wavegan["latent_dim"]),
                    upsample_rates=tuple(wavegan["upsample_rates"]),
                    upsample_kernel_sizes=tuple(wavegan["upsample_kernel_sizes"]),
                    upsample_initial_channel=int(wavegan["upsample_initial_channel"]),
                    resblock_kernel_sizes=tuple(wavegan["resblock_kernel_sizes"]),
                    resblock_dilation_sizes=tuple(tuple(d) for d in wavegan["resblock_dilation_sizes"]),
                    snake_logscale=bool(wavegan.get("snake_logscale", True)),
                ),
                ode_steps=int(raw.get("inference", {}).get("s_steps", 10)),
                cfg_alpha=float(raw.get("inference", {}).get("cfg_alpha", 1.0)),
            )
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise CheckpointError(f"cannot read token2wav config {path}: {error!r}") from None

    def to_dict(self) -> dict:
        """The reference's layout, so the file reads back through from_file."""
        latent = asdict(self.token2latent)
        transformer = {key: latent.pop(key) for key in ("num_layers", "hidden_size", "ffn_hidden_size", "num_heads")}
        vocoder = asdict(self.vocoder)
        return {
            "data": {"audio": {"sample_rate": self.sample_rate}},
            "model": {
                "type": "Token2WavDecoder",
                "token2latent": {**latent, "transformer": {**transformer, "modulation": True, "rotary_bias": True}},
                "wavegan": {
                    **vocoder,
                    "type": "BigVGANFlowVAE",
                    "resblock": "1",
                    "activation": "snakebeta",
                    "causal": True,
                },
            },
            "inference": {"s_steps": self.ode_steps, "cfg_alpha": self.cfg_alpha},
        }
