"""Random checkpoints in each model's real on-disk layout, built offline, for tests, the demo and benchmarks.

Two sizes. "tiny": widths and depths shrink; everything a code path depends on stays real: file names and
formats, the special tokens and chat templates, CSM's 32 codebooks of 2051 ids and its codec's 1920 samples a
frame, Covo's 16384 audio codes, 128 mel bins and 30 s Whisper window. "full": the released models' published
dimensions (CsmConfig's defaults; Covo-Audio-Chat's Qwen2-7B LLM, Whisper large-v3 encoder and token2wav),
vocabularies padded to the real sizes with the special tokens at their real ids, weights in bfloat16, and
`layers` to cut the language model's depth where a machine cannot hold all of it. Random weights make noise,
but every byte a step reads is there, so speed and memory are the real model's.
"""

from __future__ import annotations

import inspect
import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from accelerate import init_empty_weights
from huggingface_hub import save_torch_state_dict
from safetensors.torch import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from torch import nn
from transformers import (
    CsmConfig,
    CsmForConditionalGeneration,
    CsmProcessor,
    EncodecFeatureExtractor,
    GenerationConfig,
    MimiConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2Tokenizer,
    WhisperConfig,
)
from transformers.models.csm.modeling_csm import CsmCodebooksHead
from transformers.models.mimi.modeling_mimi import MimiEuclideanCodebook

from voxport.errors import InputError
from voxport.models.covo.config import CovoConfig
from voxport.models.covo.network import CovoAudioNetwork
from voxport.models.covo.prompt import AUDIO_END, AUDIO_SLOT, AUDIO_START, SYSTEM_PROMPT
from voxport.models.covo.token2wav.config import Token2LatentConfig, Token2WavConfig, VocoderConfig
from voxport.models.covo.token2wav.decoder import Token2WavNetwork
from voxport.runtime.files import directory_replaced_atomically

# A few sentences to learn byte-level merges from: enough for short English prompts to tokenize sensibly.
_CORPUS = [
    "Hello, this is a tiny voice checkpoint made for tests and demos.",
    "The quick brown fox jumps over the lazy dog while the band plays on.",
    "Speech models run on many devices: graphics cards, neural processors and plain CPUs.",
    "Every port is checked against a float32 reference on the CPU, one layer at a time.",
    "What time is it? It is a quarter past nine in the morning, and the coffee is ready.",
    "Numbers like 1, 2, 3, 10, 42 and 2048 appear in speech too.",
]

SIZES = ("tiny", "full")
FULL_DTYPE = torch.bfloat16  # what the released checkpoints store
SHARD_BYTES = 2 * 2**30  # full-size weights are written (and generated) one shard of this size at a time
CSM_BACKBONE_LAYERS = inspect.signature(CsmConfig).parameters["num_hidden_layers"].default  # 16, as in CSM-1B
COVO_LLM_LAYERS = 28  # Qwen2-7B
INIT_STD = 0.02  # matrices of full-size Covo: transformers' initializer_range

# Qwen2's chat specials, then the audio-feature markers Covo-Audio adds, in the real tokenizer's order.
COVO_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", AUDIO_START, AUDIO_SLOT, AUDIO_END]
COVO_AUDIO_CODES = 16384  # ids past the text vocabulary: one per speech code at 25 Hz
QWEN2_REGULAR_TOKENS = 151643  # the real vocabulary's ordinary tokens; <|endoftext|> is the first special
COVO_TEXT_VOCAB = 151671  # len(tokenizer) of the real checkpoint: audio codes start at this id
# The full-size order: Qwen2's specials, reserved ones, then Covo's markers so that <|cAUDIO|> is id 151666.
COVO_FULL_SPECIALS = [
    *COVO_SPECIALS[:3],
    *(f"<|reserved_{i}|>" for i in range(19)),
    *COVO_SPECIALS[3:],
    *(f"<|reserved_{i}|>" for i in range(19, 22)),
]

# Llama-3 spellings of the special tokens CSM uses, in the roles the real tokenizer gives them.
BOS, EOS, AUDIO, AUDIO_EOS = "<|begin_of_text|>", "<|end_of_text|>", "<|AUDIO|>", "<|audio_eos|>"
LLAMA3_REGULAR_TOKENS = 128000  # bos is 128000, audio 128002, audio-eos 128003, as in CSM-1B's tokenizer
LLAMA3_VOCAB = 128256

# Each turn renders as bos [speaker]text eos, and a turn with audio adds the audio token and audio-eos.
# Every turn but the last must carry audio; the last one must carry text.
CSM_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if not (message['role'] is string and message['role'].isdigit()) -%}"
    "{{- raise_exception('role must be a speaker id such as \"0\"') -}}"
    "{%- endif -%}"
    "{%- set kinds = message['content'] | map(attribute='type') | list -%}"
    "{%- if 'text' not in kinds -%}{{- raise_exception('each turn needs a text item') -}}{%- endif -%}"
    "{%- if not loop.last and 'audio' not in kinds -%}"
    "{{- raise_exception('every turn but the last needs an audio item') -}}"
    "{%- endif -%}"
    "{{- bos_token + '[' + message['role'] + ']' -}}"
    "{%- for item in message['content'] if item['type'] == 'text' -%}{{- item['text'] -}}{%- endfor -%}"
    "{{- eos_token -}}"
    "{%- if 'audio' in kinds -%}{{- '" + AUDIO + AUDIO_EOS + "' -}}{%- endif -%}"
    "{%- endfor -%}"
)


def write_tiny_checkpoint(
    build: Callable[..., Path], directory: str | Path, seed: int = 0, overwrite: bool = False, **options
) -> Path:
    """Build a checkpoint beside `directory`, then move it into place: never a half-written directory.

    `options` go to `build` (size="full", layers=N for the make_tiny_* functions)."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise InputError(f"{directory} is a file: expected a directory for the checkpoint")
    if directory.is_dir() and any(directory.iterdir()) and not overwrite:
        raise InputError(f"{directory} is not empty: choose a new directory or pass --force to replace it")
    with directory_replaced_atomically(directory) as staging:
        build(staging, seed, **options)
    return directory


def make_tiny_csm(directory: str | Path, seed: int = 0, size: str = "tiny", layers: int | None = None) -> Path:
    """Write a random CSM checkpoint (config, safetensors, generation config, tokenizer, processor).

    size="full": CSM-1B's dimensions (transformers' CsmConfig defaults, Llama-3's vocabulary size) in
    bfloat16, `layers` backbone layers (default all 16); the model is built in bfloat16 (3.6 GB at full depth)."""
    directory = Path(directory)
    full = _check_size(size, layers, CSM_BACKBONE_LAYERS)
    tokenizer = _llama3_tokenizer(full)
    processor = CsmProcessor(
        feature_extractor=EncodecFeatureExtractor(feature_size=1, sampling_rate=24000, padding_value=0.0),
        tokenizer=tokenizer,
        chat_template=CSM_CHAT_TEMPLATE,
    )
    config = _full_csm_config(tokenizer, layers) if full else _tiny_csm_config(tokenizer)
    torch.manual_seed(seed)
    with _default_dtype(FULL_DTYPE if full else torch.float32):
        model = CsmForConditionalGeneration(config).eval()
    realistic_weights(model, seed)
    model.generation_config = GenerationConfig(do_sample=True, temperature=0.9, top_k=50, max_new_tokens=125)
    model.depth_decoder.generation_config = GenerationConfig(do_sample=True, temperature=0.9, top_k=50)
    model.save_pretrained(directory, max_shard_size=SHARD_BYTES)
    processor.save_pretrained(directory)
    return directory


def realistic_weights(network: nn.Module, seed: int) -> None:
    """Weights that give activations of a trained model's size, so low-precision error is as large as in a real
    port and a wrong weight shows: projections and convolutions at std 1/sqrt(fan_in), embeddings at std 1,
    Mimi's codebooks filled (all zero, the codec's audio would not depend on the codes)."""
    generator = torch.Generator().manual_seed(seed)

    def normal(tensor: torch.Tensor, std: float) -> None:
        tensor.copy_(torch.randn(tensor.shape, generator=generator) * std)

    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, nn.Embedding):
                normal(module.weight, 1.0)
            elif isinstance(module, nn.ConvTranspose1d):  # [in, out, kernel]: each output sums in x kernel / stride
                normal(module.weight, (module.weight.shape[0] * module.weight.shape[2] / module.stride[0]) ** -0.5)
            elif isinstance(module, (nn.Linear, nn.Conv1d)):
                normal(module.weight, module.weight[0].numel() ** -0.5)
            elif isinstance(module, CsmCodebooksHead):  # [codebooks, hidden, vocab]
                normal(module.weight, module.weight.shape[1] ** -0.5)
            elif isinstance(module, MimiEuclideanCodebook):
                normal(module.embed_sum, 1.0)
                module.cluster_usage.fill_(1.0)
                module._embed = None


def _check_size(size: str, layers: int | None, full_depth: int) -> bool:
    """Whether `size` asks for the full-size model; `layers` only cuts a full-size one (of `full_depth` layers)."""
    if size not in SIZES:
        raise InputError(f"unknown checkpoint size '{size}': expected {' or '.join(SIZES)}")
    if layers is not None and (size != "full" or not 1 <= layers <= full_depth):
        raise InputError(
            f"layers={layers}: expected 1 to {full_depth} (the released model's depth), with the full size only"
        )
    return size == "full"


@contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Modules built inside get parameters of `dtype` from the start: no float32 copy of a full-size model."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _full_csm_config(tokenizer: PreTrainedTokenizerFast, layers: int | None) -> CsmConfig:
    """CSM-1B as transformers' CsmConfig defaults describe it (Llama-3.2-1B backbone, Mimi codec)."""
    ids = tokenizer.convert_tokens_to_ids
    return CsmConfig(
        num_hidden_layers=layers or CSM_BACKBONE_LAYERS,
        bos_token_id=ids(BOS),
        pad_token_id=ids(AUDIO),
        audio_token_id=ids(AUDIO),
        audio_eos_token_id=ids(AUDIO_EOS),
    )


def _attention_stack(hidden: int, ffn: int, layers: int, heads: int, kv_heads: int) -> dict[str, int]:
    """A transformer stack's widths under the names transformers' Llama-like configs (Qwen2, CSM, Mimi) share."""
    return dict(
        hidden_size=hidden,
        intermediate_size=ffn,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
    )


def _tiny_csm_config(tokenizer: PreTrainedTokenizerFast) -> CsmConfig:
    ids = tokenizer.convert_tokens_to_ids
    codec = MimiConfig(
        num_filters=4,
        codebook_dim=16,
        vector_quantization_hidden_dimension=16,
        upsample_groups=32,
        **_attention_stack(hidden=32, ffn=64, layers=1, heads=2, kv_heads=2),
        head_dim=16,
        sliding_window=16,
    )
    return CsmConfig(
        text_vocab_size=len(tokenizer),
        **_attention_stack(hidden=64, ffn=128, layers=2, heads=4, kv_heads=2),
        max_position_embeddings=2048,
        bos_token_id=ids(BOS),
        pad_token_id=ids(AUDIO),
        audio_token_id=ids(AUDIO),
        audio_eos_token_id=ids(AUDIO_EOS),
        depth_decoder_config={
            "backbone_hidden_size": 64,
            **_attention_stack(hidden=32, ffn=64, layers=2, heads=4, kv_heads=2),
            "max_position_embeddings": 33,
        },
        codec_config=codec.to_dict(),
    )


def _llama3_tokenizer(full: bool = False) -> PreTrainedTokenizerFast:
    """Byte-level BPE with Llama-3's special tokens appended last and a bos-adding post-processor.

    Full size: the vocabulary is filled to Llama-3's 128000 ordinary tokens, so the specials get their real
    ids, and reserved specials follow up to 128256."""
    specials = [BOS, EOS, AUDIO, AUDIO_EOS]
    tokenizer = _byte_level_bpe(_CORPUS, vocab_size=512, special_tokens=[] if full else specials)
    if full:
        reserved = [f"<|reserved_special_token_{i}|>" for i in range(LLAMA3_VOCAB - LLAMA3_REGULAR_TOKENS - 4)]
        tokenizer = _filled_bpe(tokenizer, LLAMA3_REGULAR_TOKENS)
        tokenizer.add_special_tokens(specials + reserved)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tokenizer.token_to_id(BOS))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=AUDIO,
        extra_special_tokens={"audio_token": AUDIO, "audio_eos_token": AUDIO_EOS},
        model_max_length=2048,
    )


def _byte_level_bpe(corpus: list[str], vocab_size: int, special_tokens: list[str]) -> Tokenizer:
    """Merges learnt from `corpus`, any text still encodable byte by byte; special tokens get the last ids."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer.add_special_tokens(special_tokens)
    return tokenizer


def _learnt_vocabulary(tokenizer: Tokenizer) -> tuple[dict[str, int], list[tuple[str, str]]]:
    learnt = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(pair.split(" ")) if isinstance(pair, str) else tuple(pair) for pair in learnt["merges"]]
    return learnt["vocab"], merges


def _filled_vocabulary(vocab: dict[str, int], size: int) -> dict[str, int]:
    """`vocab` padded with filler entries up to `size` ids: no merge makes them, so encoding is unchanged, and
    ids a random model emits there still decode."""
    return vocab | {f"filler{index}": index for index in range(len(vocab), size)}


def _filled_bpe(tokenizer: Tokenizer, size: int) -> Tokenizer:
    """The same merges and byte-level pre-tokenizer and decoder over a vocabulary filled to `size` entries."""
    vocab, merges = _learnt_vocabulary(tokenizer)
    filled = Tokenizer(models.BPE(vocab=_filled_vocabulary(vocab, size), merges=merges))
    filled.pre_tokenizer, filled.decoder = tokenizer.pre_tokenizer, tokenizer.decoder
    return filled


def make_tiny_covo(directory: str | Path, seed: int = 0, size: str = "tiny", layers: int | None = None) -> Path:
    """Write a random Covo-Audio-Chat checkpoint: config, sharded safetensors with an index, Qwen2 tokenizer.

    size="full": Qwen2-7B LLM (`layers` of its 28 layers), Whisper large-v3 encoder, full token2wav, in
    bfloat16, generated one 2 GiB shard at a time (about 16 GB at full depth, 0.47 GB per LLM layer)."""
    directory = Path(directory)
    full = _check_size(size, layers, COVO_LLM_LAYERS)
    tokenizer = _qwen2_tokenizer(full)
    config = _covo_config(len(tokenizer), tokenizer.convert_tokens_to_ids("<|endoftext|>"), full, layers)
    if full:
        with init_empty_weights(include_buffers=False):
            network = CovoAudioNetwork(config)
        write_random_shards(network, directory, seed, initialise=_realistic_module)
    else:
        torch.manual_seed(seed)
        network = CovoAudioNetwork(config)
        realistic_weights(network, seed)
        weights = {name: tensor.to(torch.bfloat16) for name, tensor in network.state_dict().items()}
        save_torch_state_dict(weights, directory, max_shard_size="3MB")
    (directory / "config.json").write_text(json.dumps(config.to_dict(), indent=2, ensure_ascii=False))
    tokenizer.save_pretrained(directory)
    _write_token2wav(directory / "token2wav", seed, full)
    return directory


def _covo_config(text_vocab: int, end_of_text: int, full: bool, layers: int | None) -> CovoConfig:
    """Tiny widths, or Covo-Audio-Chat's (Qwen2-7B: hidden 3584, ffn 18944, 28 heads over 4 KV heads;
    Whisper large-v3's encoder: d_model 1280, 32 layers, 20 heads, ffn 5120)."""
    if full:
        llm = _attention_stack(hidden=3584, ffn=18944, layers=layers or COVO_LLM_LAYERS, heads=28, kv_heads=4)
        llm["max_position_embeddings"] = 32768
        encoder = dict(d_model=1280, encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120)
    else:
        llm = _attention_stack(hidden=64, ffn=128, layers=2, heads=4, kv_heads=2)
        llm["max_position_embeddings"] = 4096
        encoder = dict(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64)
    return CovoConfig(
        llm=Qwen2Config(
            vocab_size=text_vocab + COVO_AUDIO_CODES,
            rms_norm_eps=1e-6,
            rope_theta=1e6,
            tie_word_embeddings=False,
            bos_token_id=end_of_text,
            eos_token_id=end_of_text,
            **llm,
        ),
        encoder=WhisperConfig(
            decoder_layers=1,
            decoder_attention_heads=2,
            decoder_ffn_dim=64,
            num_mel_bins=128,
            max_source_positions=1500,
            **encoder,
        ),
        audio_token_index=text_vocab,
        adapter_downsample=8,
        whisper_feats_dim=encoder["d_model"],
    )


def write_random_shards(
    network: nn.Module,
    directory: Path,
    seed: int,
    initialise: Callable[[nn.Module, int], None] | None = None,
    shard_bytes: int = SHARD_BYTES,
) -> None:
    """Random bfloat16 weights for `network` (built on the meta device) as sharded safetensors with an index
    (transformers' layout), made one shard at a time: memory holds one shard whatever the model's size.

    Each module holding weights is materialised alone in bfloat16, initialised by `initialise(module, seed)`
    (default: `normal_weights`), written, and put back on the meta device."""
    initialise = initialise or normal_weights
    holders = [(prefix, module, _own_tensors(module)) for prefix, module in network.named_modules()]
    holders = [holder for holder in holders if holder[2]]
    sizes = [sum(tensor.numel() for tensor in own.values()) * FULL_DTYPE.itemsize for *_, own in holders]
    _check_room(directory, sum(sizes))
    shards: list[list] = [[]]
    filled = 0
    for holder, size in zip(holders, sizes):
        if shards[-1] and filled + size > shard_bytes:
            shards.append([])
            filled = 0
        shards[-1].append(holder)
        filled += size
    weight_map, total = {}, 0
    for number, holders_here in enumerate(shards, start=1):
        file = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        tensors = {}
        for index, (prefix, module, _) in enumerate(holders_here):
            module.to(FULL_DTYPE).to_empty(device="cpu", recurse=False)
            initialise(module, seed + number * 100_003 + index)  # a different draw for every module
            tensors |= {
                f"{prefix}.{name}" if prefix else name: tensor.detach() for name, tensor in _own_tensors(module).items()
            }
        save_file(tensors, directory / file, metadata={"format": "pt"})
        weight_map |= dict.fromkeys(tensors, file)
        total += sum(tensor.numel() * tensor.element_size() for tensor in tensors.values())
        for _, module, _ in holders_here:
            module.to_empty(device="meta", recurse=False)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def _check_room(directory: Path, needed: int) -> None:
    """Refuse at once, rather than after minutes of writing, when the disk cannot hold the weights."""
    free = shutil.disk_usage(directory).free
    if needed > free:
        raise InputError(
            f"the weights need {needed / 1e9:.1f} GB but {directory.parent} has {free / 1e9:.1f} GB "
            f"free: free some space, write elsewhere, or cut the depth with --layers"
        )


def _own_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters and saved buffers a module holds itself (not its children's)."""
    return {
        **dict(module.named_parameters(recurse=False)),
        **{
            name: buffer
            for name, buffer in module.named_buffers(recurse=False)
            if name not in module._non_persistent_buffers_set
        },
    }


def normal_weights(module: nn.Module, seed: int) -> None:
    """As transformers initialises a module: biases zero, norm scales one, matrices and embeddings normal
    with std 0.02, drawn in the module's own dtype."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in _own_tensors(module).items():
            if tensor.dim() > 1:
                tensor.normal_(0.0, INIT_STD, generator=generator)
            else:
                tensor.fill_(0.0 if name.endswith("bias") else 1.0)


def _realistic_module(module: nn.Module, seed: int) -> None:
    """One module of a full-size network materialised alone: transformers' defaults for norms and biases, then
    weights of realistic scale."""
    normal_weights(module, seed)
    realistic_weights(module, seed)


def _write_token2wav(directory: Path, seed: int, full: bool) -> None:
    """token2wav/ as released (model.pt, global_mean_var.npy, prompt/*.npy) plus the config it was built from.

    Full size: the released architecture (Token2WavConfig's defaults) built in bfloat16, and a speaker prompt
    of the released one's shape (291 codes)."""
    config = (
        Token2WavConfig()
        if full
        else Token2WavConfig(
            token2latent=Token2LatentConfig(
                token_input_dim=16,
                z_dim=8,
                spkr_embed_dim=16,
                num_layers=2,
                hidden_size=32,
                ffn_hidden_size=64,
                num_heads=2,
            ),
            vocoder=VocoderConfig(latent_dim=8, upsample_initial_channel=64),
        )
    )
    torch.manual_seed(seed)
    with _default_dtype(FULL_DTYPE if full else torch.float32):
        network = Token2WavNetwork(config)
    realistic_weights(network, seed)
    (directory / "prompt").mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    torch.save(network.state_dict(), directory / "model.pt")
    del network
    rng = np.random.default_rng(seed)
    z_dim, prompt_codes = config.token2latent.z_dim, 291 if full else 20
    statistics = np.stack([0.1 * rng.standard_normal(z_dim), rng.uniform(0.5, 1.5, z_dim)]).astype(np.float32)
    np.save(directory / "global_mean_var.npy", statistics)
    # A prompt shaped like the released one: its latents run 3 frames past its codes' 4 x P.
    np.save(directory / "prompt" / "prompt_token.npy", rng.integers(0, COVO_AUDIO_CODES, (1, prompt_codes)))
    np.save(
        directory / "prompt" / "prompt_latent.npy",
        rng.standard_normal((1, 4 * prompt_codes + 3, z_dim)).astype(np.float32),
    )
    np.save(
        directory / "prompt" / "speaker_embed.npy",
        0.1 * rng.standard_normal((1, config.token2latent.spkr_embed_dim)).astype(np.float32),
    )


def _qwen2_tokenizer(full: bool = False) -> Qwen2Tokenizer:
    """Qwen2's tokenizer class (its pre-tokenizer and normaliser) over merges learnt from a small corpus.

    Full size: filled to Qwen2's 151643 ordinary tokens, then specials up to the real 151671, with
    <|endoftext|>, <|im_start|>, <|im_end|> and <|cAUDIO|> at their real ids."""
    vocab, merges = _learnt_vocabulary(_byte_level_bpe(_CORPUS + [SYSTEM_PROMPT], vocab_size=1024, special_tokens=[]))
    if full:
        vocab = _filled_vocabulary(vocab, QWEN2_REGULAR_TOKENS)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, model_max_length=32768)
    tokenizer.add_tokens([AddedToken(token, special=True) for token in (COVO_FULL_SPECIALS if full else COVO_SPECIALS)])
    return tokenizer
