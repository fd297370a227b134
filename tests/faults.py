"""Port faults of the kinds real ports have, planted in a copy of a tiny checkpoint or in one loaded model.

Checkpoint faults change only the target's files (weights with ~2 % noise on one block, a RoPE base changed in
config.json). Code faults patch the target model's instances only (the reference and the benchmark load clean):
RMSNorm eps or its float32 upcast, softmax in half precision, attention scale, an activation swapped, the mel
front end in float16, the engine's KV cache written one row late (always, or in decoding steps only) or its RoPE
sign dropped, the adapter's stride. The last few are precision-sized (a scale x1.01, 1 % noise), for the table at
real widths. Each fault names the block
accuracy must point to. Used by tests/test_accuracy_faults.py and tests/fault_table.py.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import AttentionInterface

from voxport.audio.features import CHUNK_SAMPLES, HOP_LENGTH, N_FFT, _pad_or_trim, mel_filters
from voxport.models import registry
from voxport.validate import accuracy, reproducibility

NOISE = 0.02  # of each weight's RMS


@dataclass(frozen=True)
class Fault:
    name: str
    family: str
    block: str  # what first_drift_module must be
    plant: Callable  # checkpoint fault: plant(clean_dir, faulty_dir); code fault: plant(model)
    in_code: bool = False


def copy_with_noise(clean: Path, faulty: Path, prefix: str, noise: float = NOISE) -> Path:
    """`clean` copied to `faulty`, every weight tensor under `prefix` given `noise` x its RMS of seeded noise."""
    shutil.copytree(clean, faulty)
    generator = torch.Generator().manual_seed(0)

    def noisy(weights: dict) -> int:
        changed = 0
        for key in sorted(weights):
            tensor = weights[key]
            if key.startswith(prefix + ".") and tensor.is_floating_point() and tensor.ndim >= 1 and tensor.numel() > 1:
                rms = tensor.float().pow(2).mean().sqrt()
                weights[key] = (tensor.float() + noise * rms * torch.randn(tensor.shape, generator=generator)).to(
                    tensor.dtype
                )
                changed += 1
        return changed

    changed = 0
    for shard in sorted(faulty.glob("*.safetensors")):
        weights = load_file(shard)
        if count := noisy(weights):
            save_file(weights, shard, metadata={"format": "pt"})
            changed += count
    token2wav = faulty / "token2wav" / "model.pt"
    if token2wav.is_file():
        weights = torch.load(token2wav, weights_only=True)
        if count := noisy(weights):
            torch.save(weights, token2wav)
            changed += count
    if not changed:
        raise ValueError(f"no weights under {prefix} in {clean}")
    return faulty


def copy_with_rope_base(clean: Path, faulty: Path, section: str | None, factor: float = 2.0) -> Path:
    shutil.copytree(clean, faulty)
    config = json.loads((faulty / "config.json").read_text())
    rope = (config[section] if section else config)["rope_parameters"]
    rope["rope_theta"] *= factor
    (faulty / "config.json").write_text(json.dumps(config, indent=2))
    return faulty


def weights(prefix: str, noise: float = NOISE):
    return lambda clean, faulty: copy_with_noise(clean, faulty, prefix, noise)


def rope(section: str | None):
    return lambda clean, faulty: copy_with_rope_base(clean, faulty, section)


# --- code faults: each takes the loaded target model and breaks one thing in it --------------------------------


def _module(model, name: str) -> nn.Module:
    return dict(model.named_modules())[name]


def rms_norm_eps(name: str, eps: float = 1e-2):
    def plant(model):
        _module(model, name).variance_epsilon = eps

    return plant


def rms_norm_without_upcast(name: str):
    """RMSNorm computed in the input dtype (no float32 statistics)."""

    def plant(model):
        norm = _module(model, name)

        def forward(hidden):
            return norm.weight * (hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon))

        norm.forward = forward

    return plant


def _half_softmax_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Eager attention whose softmax runs in the inputs' dtype (a half-precision softmax kernel)."""
    groups = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
    scores = query @ key.transpose(-1, -2) * (scaling if scaling is not None else query.shape[-1] ** -0.5)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, float("-inf"))
        else:
            scores = scores + attention_mask[..., : key.shape[-2]]
    elif query.shape[-2] > 1:
        causal = torch.ones(query.shape[-2], key.shape[-2], dtype=torch.bool, device=query.device).tril(
            key.shape[-2] - query.shape[-2]
        )
        scores = scores.masked_fill(~causal, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # no dtype=float32: the fault
    return (weights @ value).transpose(1, 2).contiguous(), weights


AttentionInterface.register("voxport_half_softmax", _half_softmax_attention)


def softmax_in_half(name: str):
    """Every attention layer sharing `name`'s config computes softmax in the model dtype."""

    def plant(model):
        _module(model, name).self_attn.config._attn_implementation = "voxport_half_softmax"

    return plant


def attention_scale(name: str, factor: float = 1.25):
    def plant(model):
        _module(model, name).self_attn.scaling *= factor

    return plant


def activation_swap(name: str):
    def plant(model):
        _module(model, name).mlp.act_fn = nn.GELU()

    return plant


def adapter_stride(name: str):
    def plant(model):
        _module(model, name).conv1d.stride = (1,)

    return plant


def mel_in_float16(model):
    """The front end's mel projection and log in float16 (as a port that runs everything in half would)."""

    def log_mels(segments):
        mels = []
        for segment in segments:
            samples = _pad_or_trim(segment.float().to(model.device), CHUNK_SAMPLES)
            window = torch.hann_window(N_FFT, device=samples.device)
            spectrum = torch.view_as_real(torch.stft(samples, N_FFT, HOP_LENGTH, window=window, return_complex=True))
            power = spectrum.pow(2).sum(-1)[..., :-1].half()
            mel = mel_filters(model.config.encoder.num_mel_bins).to(samples.device).half() @ power
            log_mel = torch.clamp(mel, min=1e-10).log10()
            log_mel = torch.maximum(log_mel, log_mel.max() - 8.0)
            mels.append(((log_mel + 4.0) / 4.0).float())
        return torch.stack(mels)

    model.log_mels = log_mels


def _engine_fault(change_layer: Callable):
    """A code fault in the model's generating engine (CSM's backbone stack, Covo's LLM stack): the target's
    `engine_type` replaced by one whose stack runs each layer as `change_layer(run, x, rope, slots)`, `run`
    being the original layer with its other arguments bound. Generation, repro's teacher forcing and accuracy's engine
    stages all run it, in either order of the stack's calls (one after another, or layer-major)."""

    def plant(model):
        base = type(model).engine_type

        class Faulty(base):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                stack = self.backbone if hasattr(self, "backbone") else self.stack
                original = type(stack).layer

                class Changed(type(stack)):
                    def layer(self, index, weights, x, rope, slots, mask, visible):
                        def run(x, rope, slots):
                            return original(self, index, weights, x, rope, slots, mask, visible)

                        return change_layer(run, x, rope, slots)

                stack.__class__ = Changed

        model.engine_type = Faulty

    return plant


def _late_rows(run, x, rope, slots):
    """The KV cache written one row after the slot it belongs to."""
    return run(x, rope, slots + 1)


def _rope_sign_dropped(run, x, rope, slots):
    """RoPE's rotate-half without its minus sign: the first half of the sine table taken positive."""
    cos, sin = rope
    half = sin.shape[-1] // 2
    return run(x, (cos, torch.cat([-sin[..., :half], sin[..., half:]], dim=-1)), slots)


def _late_rows_when_decoding(run, x, rope, slots):
    """The KV cache written one row late by the decoding steps only (one position a call); prompts are right."""
    return run(x, rope, slots + 1 if x.shape[1] == 1 else slots)


kv_cache_late = _engine_fault(_late_rows)
kv_cache_late_when_decoding = _engine_fault(_late_rows_when_decoding)
rope_sign_dropped = _engine_fault(_rope_sign_dropped)


FAULTS = [
    # Planted in a copy of the checkpoint: one block of each stage with ~2 % weight noise, and RoPE bases.
    Fault("weights backbone layer", "csm", "backbone_model.layers.1", weights("backbone_model.layers.1")),
    Fault("weights depth layer", "csm", "depth_decoder.model.layers.0", weights("depth_decoder.model.layers.0")),
    Fault("weights lm_head", "csm", "lm_head", weights("lm_head")),
    Fault("weights Mimi codebooks", "csm", "codec_model.quantizer", weights("codec_model.quantizer")),
    Fault(
        "weights Mimi transformer",
        "csm",
        "codec_model.decoder_transformer.layers.0",
        weights("codec_model.decoder_transformer.layers.0"),
    ),
    Fault("weights Mimi decoder conv", "csm", "codec_model.decoder.layers.3", weights("codec_model.decoder.layers.3")),
    Fault("RoPE base x2", "csm", "backbone_model.rotary_emb", rope(None)),
    Fault("weights encoder layer", "covo", "encoder.layers.1", weights("encoder.layers.1")),
    Fault("weights adapter", "covo", "audio_adapter.downsample_layers.1", weights("audio_adapter.downsample_layers.1")),
    Fault("weights LLM layer", "covo", "llm.model.layers.1", weights("llm.model.layers.1")),
    Fault("weights DiT block", "covo", "token2latent.blocks.1", weights("token2latent.blocks.1")),
    Fault("weights vocoder block", "covo", "wavegan.resblocks.3", weights("wavegan.resblocks.3")),
    Fault("RoPE base x2", "covo", "llm.model.rotary_emb", rope("llm_config")),
    # Planted in the target's code.
    Fault(
        "RMSNorm eps 1e-2",
        "csm",
        "backbone_model.layers.1",
        rms_norm_eps("backbone_model.layers.1.post_attention_layernorm"),
        True,
    ),
    Fault(
        "RMSNorm without float32 upcast",
        "csm",
        "backbone_model.layers.0",
        rms_norm_without_upcast("backbone_model.layers.0.input_layernorm"),
        True,
    ),
    Fault("softmax in model dtype", "csm", "backbone_model.layers.0", softmax_in_half("backbone_model.layers.0"), True),
    Fault("attention scale x1.25", "csm", "backbone_model.layers.1", attention_scale("backbone_model.layers.1"), True),
    Fault("SiLU swapped for GELU", "csm", "backbone_model.layers.0", activation_swap("backbone_model.layers.0"), True),
    Fault("KV cache written one row late", "csm", "engine", kv_cache_late, True),
    Fault("engine RoPE sign dropped", "csm", "engine", rope_sign_dropped, True),
    Fault("RMSNorm eps 1e-2", "covo", "llm.model.layers.0", rms_norm_eps("llm.model.layers.0.input_layernorm"), True),
    Fault(
        "RMSNorm without float32 upcast",
        "covo",
        "llm.model.layers.1",
        rms_norm_without_upcast("llm.model.layers.1.post_attention_layernorm"),
        True,
    ),
    Fault("softmax in model dtype", "covo", "llm.model.layers.0", softmax_in_half("llm.model.layers.0"), True),
    Fault("attention scale x1.25", "covo", "encoder.layers.1", attention_scale("encoder.layers.1"), True),
    Fault("SiLU swapped for GELU", "covo", "llm.model.layers.1", activation_swap("llm.model.layers.1"), True),
    Fault("mel front end in float16", "covo", "mel", mel_in_float16, True),
    Fault(
        "adapter stride 1 for 2",
        "covo",
        "audio_adapter.downsample_layers.0",
        adapter_stride("audio_adapter.downsample_layers.0"),
        True,
    ),
    Fault("KV cache written one row late", "covo", "generation", kv_cache_late, True),
    Fault("engine RoPE sign dropped", "covo", "generation", rope_sign_dropped, True),
    # Precision-sized faults (the kinds a tiny model hides in bfloat16's rounding): for the table at real widths.
    Fault(
        "attention scale x1.01",
        "csm",
        "backbone_model.layers.1",
        attention_scale("backbone_model.layers.1", 1.01),
        True,
    ),
    Fault("KV cache late in decoding steps only", "csm", "engine", kv_cache_late_when_decoding, True),
    Fault("attention scale x1.01", "covo", "llm.model.layers.1", attention_scale("llm.model.layers.1", 1.01), True),
    Fault("KV cache late in decoding steps only", "covo", "generation", kv_cache_late_when_decoding, True),
    Fault("weights DiT block 1 % noise", "covo", "token2latent.blocks.1", weights("token2latent.blocks.1", 0.01)),
]


def run_fault(fault: Fault, clean: Path, workdir: Path, dtype: torch.dtype, **options) -> dict:
    """accuracy with the fault in the target only (a checkpoint copy, or code patched into the target's load)."""
    return _against_clean(accuracy.run_accuracy, fault, clean, workdir, dtype, **options)


def run_repro_fault(fault: Fault, clean: Path, workdir: Path, dtype: torch.dtype = torch.float32, **options) -> dict:
    """repro on the CPU with the fault in the target only; the reference streams come from the clean checkpoint."""
    return _against_clean(reproducibility.run_reproducibility, fault, clean, workdir, dtype, **options)


def _against_clean(check, fault: Fault, clean: Path, workdir: Path, dtype: torch.dtype, **options) -> dict:
    """`check` run on the CPU with the fault planted in the target and the clean checkpoint as its reference."""
    with planted(fault, clean, workdir) as target:
        return check(
            str(target),
            torch.device("cpu"),
            dtype,
            reference_source=str(clean),
            progress=lambda message: None,
            **options,
        )


@contextmanager
def planted(fault: Fault, clean: Path, workdir: Path) -> Iterator[Path]:
    """The target checkpoint: a faulty copy, or a clean copy whose every load gets the code fault."""
    if not fault.in_code:
        yield fault.plant(clean, workdir / "faulty")
        return
    target = workdir / "target"
    shutil.copytree(clean, target, copy_function=_link_or_copy)  # never written: links spare GBs at full size
    load = registry.load_model

    def load_patched(source, device, in_dtype, **options):
        model = load(source, device, in_dtype, **options)
        if Path(source) == target:
            fault.plant(model)
        return model

    patches = [(accuracy, "load_model"), (reproducibility, "load_model"), (registry, "load_model")]
    saved = [getattr(owner, name) for owner, name in patches]
    for owner, name in patches:
        setattr(owner, name, load_patched)
    try:
        yield target
    finally:
        for (owner, name), value in zip(patches, saved):
            setattr(owner, name, value)


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:  # another file system
        shutil.copy2(source, destination)


def math_attention(model):
    """A correct port with other kernels: every attention module of the target runs PyTorch's math SDPA backend,
    where the benchmark runs the CPU's flash kernel. Must pass."""
    for module in dict(model.named_modules()).values():
        if module.__class__.__name__.endswith("Attention") and hasattr(module, "scaling"):
            forward = module.forward

            def with_math(*args, _forward=forward, **kwargs):
                with sdpa_kernel(SDPBackend.MATH):
                    return _forward(*args, **kwargs)

            module.forward = with_math


CLEAN_VARIANTS = [
    Fault("clean copy", "csm", None, lambda model: None, True),
    Fault("math SDPA kernel", "csm", None, math_attention, True),
    Fault("clean copy", "covo", None, lambda model: None, True),
    Fault("math SDPA kernel", "covo", None, math_attention, True),
]
