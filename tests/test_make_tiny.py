"""Full-size random checkpoints: the real models' dimensions, vocabularies and layout, checked without writing
gigabytes (configs, tokenizers and the shard writer on small shapes; the big writes are stubbed)."""

import json
from types import SimpleNamespace

import pytest
import torch
from accelerate import init_empty_weights
from safetensors import safe_open

from voxport.errors import InputError
from voxport.models import tiny
from voxport.models.covo.config import CovoConfig
from voxport.models.covo.model import _load_tokenizer
from voxport.models.covo.network import CovoAudioNetwork
from voxport.models.covo.prompt import AUDIO_SLOT
from voxport.runtime.weights import load_weights_strict, safetensors_files


def test_full_csm_config_is_csm_1b_with_the_real_special_ids():
    tokenizer = tiny._llama3_tokenizer(full=True)
    assert len(tokenizer) == 128256
    assert tokenizer.convert_tokens_to_ids([tiny.BOS, tiny.AUDIO, tiny.AUDIO_EOS]) == [128000, 128002, 128003]
    ids = tokenizer("[0]Hello there.").input_ids
    assert ids[0] == 128000 and max(ids[1:]) < 512  # ordinary text still encodes through the learnt merges
    config = tiny._full_csm_config(tokenizer, layers=1)
    assert config.num_hidden_layers == 1 and tiny._full_csm_config(tokenizer, None).num_hidden_layers == 16
    assert (config.hidden_size, config.intermediate_size, config.num_attention_heads, config.num_key_value_heads) == (
        2048,
        8192,
        32,
        8,
    )
    assert config.text_vocab_size == 128256 and config.vocab_size == 2051 and config.num_codebooks == 32
    depth = config.depth_decoder_config
    assert (depth.hidden_size, depth.num_hidden_layers, depth.intermediate_size) == (1024, 4, 8192)
    assert config.codec_config.hidden_size == 512 and config.codec_config.num_quantizers == 32


def test_full_covo_checkpoint_has_the_real_shapes_vocabulary_and_config(tmp_path, monkeypatch):
    written = {}
    monkeypatch.setattr(
        tiny,
        "write_random_shards",
        lambda network, directory, seed, **options: written.update(
            {name: tensor.shape for name, tensor in network.state_dict().items()}
        ),
    )
    monkeypatch.setattr(tiny, "_write_token2wav", lambda directory, seed, full: written.update(token2wav=full))
    tiny.make_tiny_covo(tmp_path, size="full", layers=1)
    config = CovoConfig.from_directory(tmp_path)
    assert config.audio_token_index == 151671 and config.llm.vocab_size == 168055
    assert config.llm.num_hidden_layers == 1 and config.encoder.encoder_layers == 32
    tokenizer = _load_tokenizer(tmp_path, config)  # checks len(tokenizer) == the audio-code offset
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>", AUDIO_SLOT]) == [
        151643,
        151644,
        151645,
        151666,
    ]
    assert written["llm.model.embed_tokens.weight"] == (168055, 3584)
    assert written["llm.lm_head.weight"] == (168055, 3584)
    assert written["llm.model.layers.0.mlp.gate_proj.weight"] == (18944, 3584)
    assert "llm.model.layers.1.mlp.gate_proj.weight" not in written
    assert written["encoder.layers.31.fc1.weight"] == (5120, 1280)
    assert written["audio_adapter.downsample_layers.2.linear2.weight"] == (3584, 2048)
    assert written["token2wav"] is True


def test_random_shards_are_bfloat16_within_the_shard_size_and_load_strictly(tmp_path):
    config = CovoConfig(
        llm=tiny.Qwen2Config(
            vocab_size=300,
            **tiny._attention_stack(hidden=32, ffn=64, layers=2, heads=4, kv_heads=2),
            tie_word_embeddings=False,
        ),
        encoder=tiny.WhisperConfig(
            d_model=16,
            encoder_layers=1,
            encoder_attention_heads=2,
            encoder_ffn_dim=32,
            num_mel_bins=128,
            max_source_positions=1500,
        ),
        audio_token_index=200,
        adapter_downsample=8,
        whisper_feats_dim=16,
    )
    with init_empty_weights(include_buffers=False):
        network = CovoAudioNetwork(config)
    shapes = {name: tensor.shape for name, tensor in network.state_dict().items()}
    tiny.write_random_shards(network, tmp_path, seed=0, shard_bytes=20_000)
    assert all(tensor.is_meta for tensor in network.parameters())  # each module went back after its shard
    files = safetensors_files(tmp_path)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(shapes) and len(files) > 3
    for file in files:  # within the size, except a shard holding one module larger than it
        names = [name for name, shard in index["weight_map"].items() if shard == file.name]
        modules = {name.rsplit(".", 1)[0] for name in names}
        assert len(modules) == 1 or sum(shapes[name].numel() * 2 for name in names) <= 20_000
    with safe_open(files[0], "pt") as shard:
        tensors = {key: shard.get_tensor(key) for key in shard.keys()}
    assert all(tensor.dtype == torch.bfloat16 for tensor in tensors.values())
    with init_empty_weights(include_buffers=False):
        network = CovoAudioNetwork(config)
    load_weights_strict(network, files, torch.device("cpu"), torch.float32)  # every key present, none unknown
    llm = network.llm.model
    assert not torch.equal(llm.layers[0].mlp.up_proj.weight[:4], llm.layers[1].mlp.up_proj.weight[:4])
    assert (
        torch.equal(llm.norm.weight, torch.ones(32))
        and not network.audio_adapter.downsample_layers[0].conv1d.bias.any()
    )
    assert llm.embed_tokens.weight.std().item() == pytest.approx(tiny.INIT_STD, rel=0.1)


def test_layers_only_cut_a_full_size_model(tmp_path):
    for size, layers in [("tiny", 2), ("full", 0), ("huge", None)]:
        with pytest.raises(InputError):
            tiny.make_tiny_csm(tmp_path / "x", size=size, layers=layers)


@pytest.mark.parametrize("make, depth", [(tiny.make_tiny_csm, 16), (tiny.make_tiny_covo, 28)])
def test_layers_never_exceed_the_released_depth(tmp_path, make, depth):
    """99 layers of Covo's LLM would be 48 GB of disk: refused before anything is built."""
    with pytest.raises(InputError, match=f"layers={depth + 1}: expected 1 to {depth}"):
        make(tmp_path / "x", size="full", layers=depth + 1)
    assert not (tmp_path / "x").exists()


def test_full_size_weights_that_the_disk_cannot_hold_are_refused_before_writing(tmp_path, monkeypatch):
    free = 2 * 2**30  # less than one full-size Covo LLM layer and Whisper large-v3's encoder
    monkeypatch.setattr(tiny.shutil, "disk_usage", lambda path: SimpleNamespace(total=free, used=0, free=free))
    with pytest.raises(InputError, match=r"the weights need \d+\.\d GB but .* has 2\.1 GB free"):
        tiny.write_tiny_checkpoint(tiny.make_tiny_covo, tmp_path / "x", size="full", layers=1)
    assert list(tmp_path.iterdir()) == []  # no shard, and no staging directory left behind


def test_command_line_refuses_layers_without_the_full_size(tmp_path, capsys):
    from voxport.cli import main

    assert main(["make-tiny", "csm", str(tmp_path / "x"), "--layers", "2"]) == 1
    assert capsys.readouterr().err.strip() == "voxport: error: --layers cuts a full-size model: add --size full"
    assert not (tmp_path / "x").exists()


def test_make_tiny_writes_an_aligner_that_times_words(tmp_path, capsys):
    """`voxport make-tiny aligner DIR` gives --timestamps an aligner offline; only the tiny size exists."""
    from voxport.cli import main
    from voxport.text.align import Aligner

    assert main(["make-tiny", "aligner", str(tmp_path / "aligner")]) == 0
    assert "forced aligner" in capsys.readouterr().out
    assert Aligner.load(tmp_path / "aligner") is not None
    assert main(["make-tiny", "aligner", str(tmp_path / "full"), "--size", "full"]) == 1
    assert "tiny size only" in capsys.readouterr().err and not (tmp_path / "full").exists()
