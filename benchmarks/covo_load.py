"""Covo-Audio-Chat loading cost next to the cost of reading the same safetensors files raw, in one run.

Writes a random-weight checkpoint with Covo's real widths (LLM hidden 3584, ffn 18944, vocab 168055; Whisper
d_model 1280, ffn 5120) and fewer layers, a few GB in all, with a full-size tokenizer; then alternates a raw
read of every byte of every shard with voxport's CovoAudioChat.load (meta-device init,
strict shard loading, tokenizer) and prints both and their ratio. Target: voxport <= 1.5x the raw read.
Both read from the page cache after a first warm-up read, so the comparison is of work, not of the disk.

    python benchmarks/covo_load.py [--llm-layers 2] [--encoder-layers 4] [--repeats 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import init_empty_weights
from huggingface_hub import save_torch_state_dict
from transformers import AddedToken, Qwen2Config, Qwen2Tokenizer, WhisperConfig

from voxport.models.covo import CovoAudioChat
from voxport.models.covo.config import CovoConfig
from voxport.models.covo.network import CovoAudioNetwork
from voxport.models.tiny import COVO_SPECIALS
from voxport.runtime.weights import safetensors_files

TEXT_VOCAB = 151671  # len(tokenizer) of the real checkpoint: audio codes start here
AUDIO_CODES = 16384


def covo_shaped_config(llm_layers: int, encoder_layers: int) -> CovoConfig:
    return CovoConfig(
        llm=Qwen2Config(vocab_size=TEXT_VOCAB + AUDIO_CODES, hidden_size=3584, intermediate_size=18944,
                        num_hidden_layers=llm_layers, num_attention_heads=28, num_key_value_heads=4,
                        max_position_embeddings=32768, rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=False),
        encoder=WhisperConfig(d_model=1280, encoder_layers=encoder_layers, encoder_attention_heads=20,
                              encoder_ffn_dim=5120, num_mel_bins=128, max_source_positions=1500),
        audio_token_index=TEXT_VOCAB, adapter_downsample=8, whisper_feats_dim=1280,
    )


def full_size_tokenizer() -> Qwen2Tokenizer:
    """A Qwen2 tokenizer with the real vocabulary size (byte tokens, filler entries, then the specials)."""
    from tokenizers import pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    filler = TEXT_VOCAB - len(alphabet) - len(COVO_SPECIALS)
    vocab = {token: index for index, token in enumerate(alphabet + [f"filler{i}" for i in range(filler)])}
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[])
    tokenizer.add_tokens([AddedToken(token, special=True) for token in COVO_SPECIALS])
    return tokenizer


def write_checkpoint(directory: Path, config: CovoConfig) -> float:
    """Random bf16 weights in the real layout; returns their size in GB."""
    with init_empty_weights():
        shapes = {name: tensor.shape for name, tensor in CovoAudioNetwork(config).state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    weights = {name: torch.randn(shape, generator=generator, dtype=torch.bfloat16) * 0.02
               for name, shape in shapes.items()}
    save_torch_state_dict(weights, directory, max_shard_size="2GB")
    (directory / "config.json").write_text(json.dumps(config.to_dict()))
    tokenizer = full_size_tokenizer()
    assert len(tokenizer) == TEXT_VOCAB
    tokenizer.save_pretrained(directory)
    return sum(t.numel() * t.element_size() for t in weights.values()) / 1e9


def raw_read_seconds(files: list[Path]) -> float:
    """Every byte of every shard into memory, and nothing else: the floor for any loader."""
    start = time.perf_counter()
    for file in files:
        buffer = np.empty(file.stat().st_size, dtype=np.uint8)  # not zero-filled: only the read is timed
        with open(file, "rb", buffering=0) as stream:
            stream.readinto(memoryview(buffer))
        del buffer
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llm-layers", type=int, default=2)
    parser.add_argument("--encoder-layers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dir", type=Path, help="where to write the checkpoint (default: a temporary directory)")
    args = parser.parse_args()

    directory = args.dir or Path(tempfile.mkdtemp(prefix="voxport-covo-bench-"))
    directory.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    try:
        start = time.perf_counter()
        size = write_checkpoint(directory, covo_shaped_config(args.llm_layers, args.encoder_layers))
        print(f"wrote {size:.2f} GB of bf16 weights ({args.llm_layers} LLM layers, {args.encoder_layers} encoder "
              f"layers, real widths) in {time.perf_counter() - start:.1f} s to {directory}")
        files = safetensors_files(directory)
        raw_read_seconds(files)  # warm the page cache once, so every timed run reads from memory alike
        raw, ours, init, load = [], [], [], []
        for repeat in range(args.repeats):
            raw.append(raw_read_seconds(files))
            start = time.perf_counter()
            model = CovoAudioChat.load(directory, device, torch.bfloat16)
            ours.append(time.perf_counter() - start)
            init.append(model.init_seconds)
            load.append(model.load_seconds)
            del model
            print(f"run {repeat}: raw read {raw[-1]:.2f} s | voxport load {ours[-1]:.2f} s "
                  f"(init {init[-1]:.2f} s, weights {load[-1]:.2f} s, rest: config + tokenizer)")
        ratio = statistics.median(ours) / statistics.median(raw)
        print(f"median raw read {statistics.median(raw):.2f} s ({size / statistics.median(raw):.2f} GB/s); "
              f"median voxport load {statistics.median(ours):.2f} s; ratio voxport/raw = {ratio:.2f} "
              f"(target <= 1.5)")
    finally:
        if args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
