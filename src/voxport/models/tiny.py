"""Tiny random checkpoints in each model's real on-disk layout, built offline, for tests and the demo.

Widths and depths shrink; everything a code path depends on stays real: file names and formats, the
special tokens and chat templates, CSM's 32 codebooks of 2051 ids and its codec's 1920 samples a frame,
Covo's 16384 audio codes, 128 mel bins and 30 s Whisper window.
"""

from __future__ import annotations

from collections.abc import Callable
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn
from huggingface_hub import save_torch_state_dict
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
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

# Qwen2's chat specials, then the audio-feature markers Covo-Audio adds, in the real tokenizer's order.
COVO_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", AUDIO_START, AUDIO_SLOT, AUDIO_END]
COVO_AUDIO_CODES = 16384  # ids past the text vocabulary: one per speech code at 25 Hz

# Llama-3 spellings of the special tokens CSM uses, in the roles the real tokenizer gives them.
BOS, EOS, AUDIO, AUDIO_EOS = "<|begin_of_text|>", "<|end_of_text|>", "<|AUDIO|>", "<|audio_eos|>"

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
    build: Callable[[Path, int], Path], directory: str | Path, seed: int = 0, overwrite: bool = False
) -> Path:
    """Build a checkpoint beside `directory`, then move it into place: never a half-written directory."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise InputError(f"{directory} is a file: expected a directory for the checkpoint")
    if directory.is_dir() and any(directory.iterdir()) and not overwrite:
        raise InputError(f"{directory} is not empty: choose a new directory or pass --force to replace it")
    with directory_replaced_atomically(directory) as staging:
        build(staging, seed)
    return directory


def make_tiny_csm(directory: str | Path, seed: int = 0) -> Path:
    """Write a random CSM checkpoint (config, safetensors, generation config, tokenizer, processor)."""
    directory = Path(directory)
    tokenizer = _tiny_llama3_tokenizer()
    processor = CsmProcessor(
        feature_extractor=EncodecFeatureExtractor(feature_size=1, sampling_rate=24000, padding_value=0.0),
        tokenizer=tokenizer,
        chat_template=CSM_CHAT_TEMPLATE,
    )
    config = _tiny_csm_config(tokenizer)
    torch.manual_seed(seed)
    model = CsmForConditionalGeneration(config).eval()
    realistic_weights(model, seed)
    model.generation_config = GenerationConfig(do_sample=True, temperature=0.9, top_k=50, max_new_tokens=125)
    model.depth_decoder.generation_config = GenerationConfig(do_sample=True, temperature=0.9, top_k=50)
    model.save_pretrained(directory)
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


def _tiny_csm_config(tokenizer: PreTrainedTokenizerFast) -> CsmConfig:
    ids = tokenizer.convert_tokens_to_ids
    codec = MimiConfig(
        hidden_size=32, num_filters=4, codebook_dim=16, vector_quantization_hidden_dimension=16,
        upsample_groups=32, num_hidden_layers=1, intermediate_size=64, num_attention_heads=2,
        num_key_value_heads=2, head_dim=16, sliding_window=16,
    )
    return CsmConfig(
        text_vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=ids(BOS), pad_token_id=ids(AUDIO), audio_token_id=ids(AUDIO),
        audio_eos_token_id=ids(AUDIO_EOS),
        depth_decoder_config={
            "backbone_hidden_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 33,
        },
        codec_config=codec.to_dict(),
    )


def _tiny_llama3_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE with Llama-3's special tokens appended last and a bos-adding post-processor."""
    tokenizer = _byte_level_bpe(_CORPUS, vocab_size=512, special_tokens=[BOS, EOS, AUDIO, AUDIO_EOS])
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


def make_tiny_covo(directory: str | Path, seed: int = 0) -> Path:
    """Write a random Covo-Audio-Chat checkpoint: config, sharded safetensors with an index, Qwen2 tokenizer."""
    directory = Path(directory)
    tokenizer = _tiny_qwen2_tokenizer()
    text_vocab = len(tokenizer)
    end_of_text = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = CovoConfig(
        llm=Qwen2Config(
            vocab_size=text_vocab + COVO_AUDIO_CODES, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, rms_norm_eps=1e-6,
            rope_theta=1e6, tie_word_embeddings=False, bos_token_id=end_of_text, eos_token_id=end_of_text,
        ),
        encoder=WhisperConfig(
            d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64, decoder_layers=1,
            decoder_attention_heads=2, decoder_ffn_dim=64, num_mel_bins=128, max_source_positions=1500,
        ),
        audio_token_index=text_vocab,
        adapter_downsample=8,
        whisper_feats_dim=32,
    )
    torch.manual_seed(seed)
    network = CovoAudioNetwork(config)
    realistic_weights(network, seed)
    weights = {name: tensor.to(torch.bfloat16) for name, tensor in network.state_dict().items()}
    save_torch_state_dict(weights, directory, max_shard_size="3MB")
    (directory / "config.json").write_text(json.dumps(config.to_dict(), indent=2, ensure_ascii=False))
    tokenizer.save_pretrained(directory)
    _write_tiny_token2wav(directory / "token2wav", seed)
    return directory


def _write_tiny_token2wav(directory: Path, seed: int) -> None:
    """token2wav/ as released (model.pt, global_mean_var.npy, prompt/*.npy) plus the config it was built from."""
    config = Token2WavConfig(
        token2latent=Token2LatentConfig(token_input_dim=16, z_dim=8, spkr_embed_dim=16, num_layers=2,
                                        hidden_size=32, ffn_hidden_size=64, num_heads=2),
        vocoder=VocoderConfig(latent_dim=8, upsample_initial_channel=64),
    )
    torch.manual_seed(seed)
    network = Token2WavNetwork(config)
    realistic_weights(network, seed)
    (directory / "prompt").mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    torch.save(network.state_dict(), directory / "model.pt")
    rng = np.random.default_rng(seed)
    z_dim, prompt_codes = config.token2latent.z_dim, 20
    statistics = np.stack([0.1 * rng.standard_normal(z_dim), rng.uniform(0.5, 1.5, z_dim)]).astype(np.float32)
    np.save(directory / "global_mean_var.npy", statistics)
    # A prompt shaped like the released one: its latents run 3 frames past its codes' 4 x P.
    np.save(directory / "prompt" / "prompt_token.npy", rng.integers(0, COVO_AUDIO_CODES, (1, prompt_codes)))
    np.save(directory / "prompt" / "prompt_latent.npy",
            rng.standard_normal((1, 4 * prompt_codes + 3, z_dim)).astype(np.float32))
    np.save(directory / "prompt" / "speaker_embed.npy",
            0.1 * rng.standard_normal((1, config.token2latent.spkr_embed_dim)).astype(np.float32))


def _tiny_qwen2_tokenizer() -> Qwen2Tokenizer:
    """Qwen2's tokenizer class (its pre-tokenizer and normaliser) over merges learnt from a small corpus."""
    learnt = json.loads(_byte_level_bpe(_CORPUS + [SYSTEM_PROMPT], vocab_size=1024, special_tokens=[]).to_str())
    merges = [tuple(pair) for pair in learnt["model"]["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=learnt["model"]["vocab"], merges=merges,
                               model_max_length=32768)
    tokenizer.add_tokens([AddedToken(token, special=True) for token in COVO_SPECIALS])
    return tokenizer
