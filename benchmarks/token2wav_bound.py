"""How close token2wav's DiT runs to this device's compute bound: its ODE loop's achieved FLOP rate next to
a plain matmul of the DiT's own feed-forward shape, measured in one run.

Builds token2wav at the released widths (hidden 1024, ffn 4096, 16 heads, prompt of 291 codes / 1167
latent frames) with random weights and `--layers` of its 12 DiT blocks, renders `--codes` codes, and counts
the DiT's matmul FLOPs (projections, feed-forward, attention scores and values; two CFG rows, two velocity
calls per midpoint step). Times are process CPU seconds with one thread: on a shared machine they measure
the work, not the waiting for a core. A fraction near 1 means the loop is bound by arithmetic, not overhead.

    python benchmarks/token2wav_bound.py [--layers 1] [--codes 25] [--dtype float32]
"""

from __future__ import annotations

import argparse
import time

import torch

from voxport.models.covo.token2wav.config import Token2LatentConfig, Token2WavConfig
from voxport.models.covo.token2wav.decoder import SpeakerPrompt, Token2Wav, Token2WavNetwork

PROMPT_CODES, PROMPT_FRAMES = 291, 1167  # the released speaker prompt's shape


def dit_flops(config: Token2WavConfig, frames: int) -> float:
    """Matmul FLOPs of the whole ODE loop: per frame and block, q/k/v/o and the feed-forward; per block,
    attention's scores and weighted values; two CFG rows; two velocity calls a midpoint step."""
    dims = config.token2latent
    per_frame = 2 * (4 * dims.hidden_size**2 + 2 * dims.hidden_size * dims.ffn_hidden_size)
    attention = 2 * 2 * frames * frames * dims.hidden_size
    per_call = 2 * dims.num_layers * (frames * per_frame + attention)
    return per_call * 2 * (config.ode_steps - 1)


def matmul_rate(rows: int, inner: int, outer: int, dtype: torch.dtype, seconds: float = 3.0) -> float:
    """FLOP/s of [rows, inner] x [inner, outer] repeated for about `seconds` of CPU time."""
    a, b = torch.randn(rows, inner, dtype=dtype), torch.randn(inner, outer, dtype=dtype)
    a @ b
    count, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        a @ b
        count += 1
    return 2 * rows * inner * outer * count / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=1, help="DiT blocks (the released model has 12)")
    parser.add_argument("--codes", type=int, default=25, help="audio codes to render (25 a second)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    dtype = getattr(torch, args.dtype)

    torch.manual_seed(0)
    config = Token2WavConfig(token2latent=Token2LatentConfig(num_layers=args.layers))
    network = Token2WavNetwork(config).eval()
    network.token2latent.to(dtype)
    prompt = SpeakerPrompt(
        torch.randint(0, 16384, (1, PROMPT_CODES)),
        torch.randn(1, PROMPT_FRAMES, 64),
        0.1 * torch.randn(1, config.token2latent.spkr_embed_dim),
    )
    speech = Token2Wav(network, config, prompt, torch.zeros(64), torch.ones(64), torch.device("cpu"), dtype)
    tokens = torch.cat([prompt.tokens, torch.arange(args.codes).view(1, -1)], dim=1)
    frames = config.token2latent.upsample_factor * tokens.shape[1]

    with torch.inference_mode():
        start = time.process_time()
        speech._latents(tokens, seed=0)
        seconds = time.process_time() - start
    achieved = dit_flops(config, frames) / seconds
    dims = config.token2latent
    reference = matmul_rate(2 * frames, dims.hidden_size, dims.ffn_hidden_size, dtype)
    print(
        f"token2wav DiT, {args.layers} of 12 blocks, {args.dtype}, {args.codes} codes + {PROMPT_CODES}-code "
        f"prompt = {frames} frames, {config.ode_steps - 1} midpoint steps, CPU with 1 thread"
    )
    print(
        f"ODE loop: {seconds:.2f} CPU s, {achieved / 1e9:.1f} GFLOP/s; matmul [{2 * frames}x{dims.hidden_size}] x "
        f"[{dims.hidden_size}x{dims.ffn_hidden_size}]: {reference / 1e9:.1f} GFLOP/s; "
        f"fraction of the matmul rate: {achieved / reference:.2f}"
    )


if __name__ == "__main__":
    main()
