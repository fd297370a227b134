"""Audio codes to speech: the DiT solves its flow ODE (midpoint, classifier-free guidance), BigVGAN vocodes.

Length rule: with a speaker prompt of P codes and L prompt latent frames, N codes give 4(P + N) latent
frames, of which the first L are the prompt's and are cut: 4(P + N) - L frames x 240 samples. For the
released prompt (P = 291, L = 1167) that is 960 N - 720 samples at 24 kHz (N >= 1).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import init_empty_weights
from torch import nn

from voxport.errors import CheckpointError, InputError, first_line
from voxport.models.covo.token2wav.config import Token2WavConfig
from voxport.models.covo.token2wav.dit import Token2Latent
from voxport.models.covo.token2wav.vocoder import BigVGAN
from voxport.runtime.weights import assign_strict

WEIGHTS_FILE, STATS_FILE, CONFIG_FILE = "model.pt", "global_mean_var.npy", "config.json"
PROMPT_FILES = ("prompt_token.npy", "prompt_latent.npy", "speaker_embed.npy")


@dataclass(frozen=True)
class SpeakerPrompt:
    """The voice: codes and (normalised) latents of a reference utterance, and its speaker embedding."""

    tokens: torch.Tensor  # [1, P] int64
    latents: torch.Tensor  # [1, L, z_dim] float32
    speaker: torch.Tensor  # [1, spkr_embed_dim] float32

    @classmethod
    def from_directory(cls, directory: Path, config: Token2WavConfig) -> SpeakerPrompt:
        arrays = {}
        for name in PROMPT_FILES:
            path = directory / name
            if not path.is_file():
                raise CheckpointError(f"speaker prompt file {path} is missing (expected {', '.join(PROMPT_FILES)})")
            try:
                arrays[name] = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as error:
                raise CheckpointError(f"cannot read speaker prompt file {path}: {error}") from None
        tokens, latents, speaker = (arrays[name] for name in PROMPT_FILES)
        dims = config.token2latent
        expectations = [
            (
                "prompt_token.npy",
                tokens.ndim == 2
                and tokens.shape[0] == 1
                and np.issubdtype(tokens.dtype, np.integer)
                and tokens.size > 0
                and 0 <= tokens.min()
                and tokens.max() < dims.token_vocab_size,
                f"integer codes of shape (1, P) below {dims.token_vocab_size}",
                tokens,
            ),
            (
                "prompt_latent.npy",
                latents.ndim == 3
                and latents.shape[0] == 1
                and latents.shape[2] == dims.z_dim
                and latents.shape[1] <= dims.upsample_factor * (tokens.shape[-1] + 1),
                f"(1, L, {dims.z_dim}) with L <= {dims.upsample_factor} x (P + 1)",
                latents,
            ),
            ("speaker_embed.npy", speaker.shape == (1, dims.spkr_embed_dim), f"(1, {dims.spkr_embed_dim})", speaker),
        ]
        for name, fits, expected, array in expectations:
            if not fits:
                raise CheckpointError(
                    f"speaker prompt file {directory / name} has shape {array.shape} "
                    f"({array.dtype}): expected {expected}"
                )
        return cls(
            torch.from_numpy(tokens).long(), torch.from_numpy(latents).float(), torch.from_numpy(speaker).float()
        )


class Token2WavNetwork(nn.Module):
    """The two trained parts, named as in the released model.pt: token2latent.* and wavegan.*."""

    def __init__(self, config: Token2WavConfig):
        super().__init__()
        self.token2latent = Token2Latent(config.token2latent)
        self.wavegan = BigVGAN(config.vocoder)


class Token2Wav:
    """Speech from Covo's audio codes on any device; the same codes and seed give the same waveform."""

    def __init__(
        self,
        network: Token2WavNetwork,
        config: Token2WavConfig,
        prompt: SpeakerPrompt,
        mean: torch.Tensor,
        std: torch.Tensor,
        device: torch.device,
        dtype: torch.dtype,
    ):
        self.network, self.config, self.device, self.dtype = network, config, device, dtype
        self.prompt = SpeakerPrompt(*(t.to(device) for t in (prompt.tokens, prompt.latents, prompt.speaker)))
        self.mean, self.std = mean.to(device), std.to(device)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @classmethod
    def load(
        cls, directory: Path, device: torch.device, dtype: torch.dtype, prompt_dir: Path | None = None
    ) -> Token2Wav:
        """From a checkpoint's token2wav/ folder (model.pt, global_mean_var.npy, optional config.json)."""
        config_file = directory / CONFIG_FILE
        config = Token2WavConfig.from_file(config_file) if config_file.is_file() else Token2WavConfig()
        prompt = SpeakerPrompt.from_directory(prompt_dir or directory / "prompt", config)
        mean, std = _latent_statistics(directory / STATS_FILE, config.token2latent.z_dim)
        with init_empty_weights(include_buffers=False):
            network = Token2WavNetwork(config)
        _load_weights(network, directory / WEIGHTS_FILE, device, dtype)
        network.to(device)  # the buffers computed on the host (filters, rotary frequencies) that were not stored
        network.wavegan.float()  # its computed buffers too: the vocoder runs in float32, whatever the DiT's dtype
        return cls(network.eval(), config, prompt, mean, std, device, dtype)

    def frames_for(self, codes: int) -> int:
        """Latent frames (100 Hz) that `codes` audio codes become once the prompt is cut."""
        factor = self.config.token2latent.upsample_factor
        return factor * (self.prompt.tokens.shape[1] + codes) - self.prompt.latents.shape[1]

    @torch.inference_mode()
    def render(self, codes: list[int] | torch.Tensor, seed: int = 0) -> np.ndarray:
        """Float32 mono waveform at `sample_rate` for audio codes 0..vocab-1."""
        return self.vocode(self.speech_latents(codes, seed))

    @torch.inference_mode()
    def speech_latents(self, codes: list[int] | torch.Tensor, seed: int = 0) -> torch.Tensor:
        """The DiT's part: latents [1, frames, z_dim] of `codes`, the prompt's frames cut, de-normalised."""
        codes = torch.as_tensor(codes, dtype=torch.long, device=self.device).view(1, -1)
        vocab = self.config.token2latent.token_vocab_size
        if codes.numel() == 0:
            raise InputError("no audio codes to speak: expected at least one")
        if int(codes.min()) < 0 or int(codes.max()) >= vocab:
            raise InputError(f"audio codes must lie in 0..{vocab - 1}")
        latents = self._latents(torch.cat([self.prompt.tokens, codes], dim=1), seed)
        return latents[:, self.prompt.latents.shape[1] :] * self.std + self.mean

    @torch.inference_mode()
    def vocode(self, latents: torch.Tensor) -> np.ndarray:
        """The vocoder's part: float32 mono waveform of latents [1, frames, z_dim]."""
        waveform = self.network.wavegan(latents.transpose(1, 2).float())
        return waveform[0, 0].cpu().numpy()

    def _latents(self, tokens: torch.Tensor, seed: int) -> torch.Tensor:
        """Integrate the flow from seeded noise (t = 0) to latents (t = 1) with the midpoint rule."""
        dit = self.network.token2latent
        conditioned = dit.embed_codes(tokens)  # [1, frames, hidden]
        frames, z_dim = conditioned.shape[1], self.config.token2latent.z_dim
        prefix = torch.zeros(1, frames, z_dim, device=self.device)
        prefix[:, : self.prompt.latents.shape[1]] = self.prompt.latents
        generator = torch.Generator(device=self.device).manual_seed(seed)
        state = torch.randn(1, frames, z_dim, device=self.device, generator=generator)
        # Classifier-free guidance: row 0 sees no tokens, row 1 sees them; prefix and speaker are shared.
        tokens_pair = torch.cat([torch.zeros_like(conditioned), conditioned]).to(self.dtype)
        prefix_pair = prefix.expand(2, -1, -1).to(self.dtype)
        speaker_pair = self.prompt.speaker.expand(2, -1).to(self.dtype)

        def velocity(time: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
            times = time.expand(2)
            unconditioned, conditioned_ = (
                dit.velocity(tokens_pair, prefix_pair, z.expand(2, -1, -1).to(self.dtype), times, speaker_pair)
                .float()
                .chunk(2)
            )
            return conditioned_ + (conditioned_ - unconditioned) * self.config.cfg_alpha

        times = torch.linspace(0, 1, self.config.ode_steps, device=self.device)
        for start, end in zip(times[:-1], times[1:]):
            step = end - start
            midpoint = state + velocity(start, state) * (step / 2)
            state = state + velocity(start + step / 2, midpoint) * step
        return state


def _latent_statistics(path: Path, z_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of the latents, stored as one array of 2 x z_dim values (mean, variance)."""
    try:
        values = np.load(path, allow_pickle=False).astype(np.float32).reshape(-1)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot read latent statistics {path}: {error}") from None
    if values.size != 2 * z_dim:
        raise CheckpointError(f"{path} holds {values.size} values: expected {2 * z_dim} (mean and variance)")
    mean, variance = torch.from_numpy(values).chunk(2)
    return mean, variance.sqrt()


def _load_weights(network: Token2WavNetwork, path: Path, device: torch.device, dtype: torch.dtype) -> None:
    if not path.is_file():
        raise CheckpointError(f"token2wav weights {path} are missing")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as error:
        raise CheckpointError(f"cannot read token2wav weights {path}: {first_line(error)}") from None
    state = state.get("model", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise CheckpointError(f"token2wav weights {path} hold {type(state).__name__}: expected a state dict")
    state = {key.removeprefix("module."): value for key, value in state.items()}
    # the vocoder as stored, in float32: not rounded to the DiT's dtype and upcast
    assign_strict(network, state, device, dtype, source=path, float32_prefixes=("wavegan.",))
