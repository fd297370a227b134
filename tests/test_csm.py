import json
import shutil

import numpy as np
import pytest
import torch
from transformers import CsmForConditionalGeneration, CsmProcessor

from voxport.errors import CheckpointError, InputError
from voxport.models.csm import ContextTurn, CsmSpeech, SynthesisRequest
from voxport.models.csm.model import CsmExample

CPU = torch.device("cpu")
SPECIAL_IDS = [2048, 2049, 2050]


def test_tiny_checkpoint_has_the_real_layout(tiny_csm_dir):
    names = {path.name for path in tiny_csm_dir.iterdir()}
    assert {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        "processor_config.json",
    } <= names
    config = json.loads((tiny_csm_dir / "config.json").read_text())
    assert config["model_type"] == "csm" and config["num_codebooks"] == 32 and config["vocab_size"] == 2051
    assert config["codec_config"]["codebook_size"] == 2048 and config["codec_config"]["sampling_rate"] == 24000
    processor = CsmProcessor.from_pretrained(tiny_csm_dir)
    ids = processor.tokenizer.convert_tokens_to_ids
    assert ids("<|AUDIO|>") == config["audio_token_id"] and ids("<|audio_eos|>") == config["audio_eos_token_id"]
    assert ids("<|begin_of_text|>") == config["bos_token_id"]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_the_codec_loads_its_float32_weights_as_stored(tiny_csm_dir, dtype):
    """Mimi runs in float32: its weights come from the checkpoint as they are, not rounded to the dtype and upcast."""
    from safetensors import safe_open

    model = CsmSpeech.load(tiny_csm_dir, CPU, dtype).model
    loaded = dict(model.named_parameters())
    with safe_open(tiny_csm_dir / "model.safetensors", "pt") as stored:
        codec = [key for key in stored.keys() if key.startswith("codec_model.") and key in loaded]
        assert codec and all(stored.get_tensor(key).dtype == torch.float32 for key in codec)
        assert all(torch.equal(loaded[key], stored.get_tensor(key)) for key in codec)
    assert model.lm_head.weight.dtype == dtype


def test_synthesis_shapes_and_lengths(tiny_csm):
    result = tiny_csm.generate(SynthesisRequest(text="Hello there.", max_frames=7, seed=1))
    assert result.codes.shape == (7, 32) and result.codes.dtype == np.int64
    assert result.codes.max() < 2048 and result.codes.min() >= 0
    assert result.audio.dtype == np.float32 and result.audio.ndim == 1
    assert len(result.audio) == result.frames * 1920 and result.sample_rate == 24000
    assert set(result.timings) == {"prompt_seconds", "generation_seconds", "decode_seconds"}
    assert result.rtf > 0


def test_same_seed_same_audio(tiny_csm):
    request = SynthesisRequest(text="Say it twice.", max_frames=5, seed=7)
    first, second = tiny_csm.generate(request), tiny_csm.generate(request)
    assert np.array_equal(first.codes, second.codes) and np.array_equal(first.audio, second.audio)
    other = tiny_csm.generate(SynthesisRequest(text="Say it twice.", max_frames=5, seed=8))
    assert not np.array_equal(first.codes, other.codes)
    shortest = min(len(first.audio), len(other.audio))
    assert shortest == 0 or not np.allclose(first.audio[:shortest], other.audio[:shortest], atol=1e-3)


def test_the_codec_audio_depends_on_the_codes(tiny_csm):
    """Tiny Mimi codebooks are filled: other codes make other audio (all-zero codebooks made the same)."""
    generator = torch.Generator().manual_seed(0)
    codes = torch.randint(1, 2048, (2, 4, tiny_csm.config.num_codebooks), generator=generator)
    first, second = (tiny_csm.decode(frames) for frames in codes)
    assert np.abs(first).mean() > 1e-3
    assert np.abs(first - second).mean() > 0.1 * np.abs(first).mean()


def test_unseeded_runs_report_their_seed(tiny_csm):
    result = tiny_csm.generate(SynthesisRequest(text="Any seed.", max_frames=3))
    replay = tiny_csm.generate(SynthesisRequest(text="Any seed.", max_frames=3, seed=result.seed))
    assert np.array_equal(result.codes, replay.codes)


def transformers_greedy(checkpoint, request, audio_arrays, frames):
    """transformers' own CSM generate, both stages greedy, the codec-invalid ids suppressed."""
    reference = CsmForConditionalGeneration.from_pretrained(checkpoint)
    processor = CsmProcessor.from_pretrained(checkpoint)
    conversation = [
        {"role": str(turn.speaker), "content": [{"type": "text", "text": turn.text}, {"type": "audio", "audio": audio}]}
        for turn, audio in zip(request.context, audio_arrays)
    ] + [{"role": str(request.speaker), "content": [{"type": "text", "text": request.text}]}]
    inputs = processor.apply_chat_template(conversation, tokenize=True, return_dict=True)
    output = reference.generate(
        **inputs,
        do_sample=False,
        depth_decoder_do_sample=False,
        max_new_tokens=frames,
        suppress_tokens=SPECIAL_IDS,
        depth_decoder_suppress_tokens=SPECIAL_IDS,
    )
    return output[0].numpy()


@pytest.mark.parametrize("with_context", [False, True])
def test_greedy_codes_equal_transformers_generate(tiny_csm, tiny_csm_dir, speech_wav, with_context):
    from voxport.audio.io import load_audio

    audio = load_audio(speech_wav, 24000)
    context = (ContextTurn(speaker=1, text="An earlier turn.", audio=audio),) if with_context else ()
    request = SynthesisRequest(text="Hello from the test.", speaker=0, context=context, max_frames=10, greedy=True)
    ours = tiny_csm.generate(request).codes
    theirs = transformers_greedy(tiny_csm_dir, request, [audio] if with_context else [], frames=10)
    assert ours.shape == (10, 32)
    np.testing.assert_array_equal(ours, theirs)


def test_context_turns_shape_the_prompt(tiny_csm, speech_wav):
    plain = SynthesisRequest(text="The new line.", speaker=0)
    with_context = SynthesisRequest(
        text="The new line.", speaker=0, context=(ContextTurn(speaker=3, text="Before.", audio=speech_wav),)
    )
    plain_ids, _ = tiny_csm.prompt_input_ids(plain)
    ids, context_codes = tiny_csm.prompt_input_ids(with_context)
    tokenizer, config = tiny_csm.processor.tokenizer, tiny_csm.config
    frames = context_codes[0].shape[0]
    assert frames == 7  # 0.5 s at 12.5 frames a second, rounded up
    # The context turn comes first: bos [3]Before. eos, one audio token per frame, audio eos; then the new turn.
    expected_context = tokenizer("<|begin_of_text|>[3]Before.<|end_of_text|>", add_special_tokens=False).input_ids
    expected = expected_context + [config.audio_token_id] * frames + [config.audio_eos_token_id]
    assert ids[0].tolist() == expected + plain_ids[0].tolist()
    assert tokenizer.decode(plain_ids[0]) == "<|begin_of_text|>[0]The new line.<|end_of_text|>"
    # Audio positions carry the context's codec frames, the eos position an all-eos frame.
    embeds = tiny_csm.prompt_embeds(with_context)[0]
    audio_rows = embeds[ids[0] == config.audio_token_id]
    torch.testing.assert_close(audio_rows, tiny_csm.model.backbone_model.embed_tokens(context_codes[0][None])[0])
    eos_row = embeds[ids[0] == config.audio_eos_token_id]
    torch.testing.assert_close(eos_row, tiny_csm.model.backbone_model.embed_tokens(torch.zeros(1, 1, 32).long())[0])


def test_special_ids_never_reach_the_codec(fresh_tiny_csm):
    """Heads that score every special id far above every codec id: the picks still stay below 2048."""
    with torch.no_grad():
        for heads in (
            fresh_tiny_csm.model.lm_head.weight,  # [vocab, hidden]
            fresh_tiny_csm.model.depth_decoder.codebooks_head.weight.transpose(1, 2),
        ):  # [31, vocab, hidden]
            heads[..., :2048, :].zero_()
            # Special rows of ones and of minus ones: one scores sum(h) x 1e3 > 0 unless the state sums to 0.
            heads[..., SPECIAL_IDS, :] = torch.tensor([1e3, -1e3, 1e3]).view(3, 1)
    for greedy in (True, False):
        result = fresh_tiny_csm.generate(
            SynthesisRequest(text="Specials.", max_frames=4, min_frames=4, seed=0, greedy=greedy)
        )
        assert result.frames == 4 and result.codes.max() < 2048


def end_of_audio_model(csm: CsmSpeech) -> CsmSpeech:
    """Heads of zeros: every id ties, so greedy picks id 0 (end of audio) in every codebook."""
    with torch.no_grad():
        csm.model.lm_head.weight.zero_()
        csm.model.depth_decoder.codebooks_head.weight.zero_()
    return csm


def test_end_of_audio_frame_ends_the_row(fresh_tiny_csm):
    csm = end_of_audio_model(fresh_tiny_csm)
    result = csm.generate(SynthesisRequest(text="Stop.", max_frames=10, greedy=True))
    assert result.frames == 0 and len(result.audio) == 0
    forced = csm.generate(SynthesisRequest(text="Stop.", max_frames=10, min_frames=3, greedy=True))
    assert forced.frames == 3 and np.all(forced.codes[:, 0] != 0)


def test_teacher_forced_logits_agree_with_greedy_generation(tiny_csm):
    request = SynthesisRequest(text="Teacher forcing.", max_frames=6, greedy=True)
    codes = torch.from_numpy(tiny_csm.generate(request).codes)
    example = CsmExample(request, codes)
    logits = tiny_csm.forward_logits(example)
    assert logits["backbone_logits"].shape == (6, 2051) and logits["depth_logits"].shape == (6, 31, 2051)
    per_code = tiny_csm.token_logits(example, codes)  # through the engine: logits of the codec's 2048 ids only
    assert per_code.shape == (6, 32, 2048) and torch.equal(per_code.argmax(-1), codes)
    transformers = torch.cat([logits["backbone_logits"].unsqueeze(1), logits["depth_logits"]], dim=1)[..., :2048]
    assert torch.allclose(per_code, transformers, atol=1e-4, rtol=1e-4)  # the engine computes transformers' maths
    assert torch.equal(tiny_csm.greedy_tokens(example, 6), codes)


def test_example_inputs_are_fixed(tiny_csm):
    first, second = tiny_csm.example_inputs(), tiny_csm.example_inputs()
    assert torch.equal(first.codes, second.codes) and first.request == second.request
    assert tiny_csm.forward_logits(first)["depth_logits"].shape == (8, 31, 2051)


def test_fixed_runs_and_weight_bytes(tiny_csm):
    assert tiny_csm.run_fixed(tiny_csm.bench_inputs("short"), 3) == pytest.approx(0.24)
    model = tiny_csm.model
    # The heads' rows for the codec's 2048 ids are read, not those of the 3 specials.
    expected = (
        sum(p.numel() for p in model.backbone_model.layers.parameters())
        + 64
        + 2048 * 64
        + 31 * (sum(p.numel() for p in model.depth_decoder.model.layers.parameters()) + 32 + 64 * 32 + 32 * 2048)
    ) * 4
    assert tiny_csm.weight_bytes_per_step() == expected


def test_prompt_longer_than_context(tiny_csm):
    with pytest.raises(InputError, match="exceeds the model's context of 2048 positions"):
        tiny_csm.generate(SynthesisRequest(text="Too long.", max_frames=2048))


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"text": "   "}, "text is empty"),
        ({"max_frames": 0}, "max frames is 0"),
        ({"min_frames": 9, "max_frames": 3}, "min frames is 9"),
        ({"temperature": 0.0}, "temperature is 0.0"),
        ({"temperature": float("nan")}, "temperature is nan: expected a positive finite number"),
        ({"temperature": float("inf")}, "temperature is inf"),
        ({"seed": 2**70}, r"seed is 1180591620717411303424: expected an integer in 0..2\*\*64-1"),
        ({"seed": -1}, "seed is -1"),
        ({"top_k": -1}, "top-k is -1"),
        ({"speaker": -2}, "speaker id is -2"),
    ],
)
def test_bad_requests(fields, message):
    with pytest.raises(InputError, match=message):
        SynthesisRequest(**{"text": "fine", **fields})


def test_strict_loading_names_a_missing_weight(tiny_csm_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    broken.mkdir()
    for item in tiny_csm_dir.iterdir():
        (broken / item.name).write_bytes(item.read_bytes())
    weights = load_file(broken / "model.safetensors")
    del weights["lm_head.weight"]
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="missing lm_head.weight"):
        CsmSpeech.load(broken, CPU, torch.float32)


def test_a_checkpoint_without_its_tokenizer_names_the_file(tiny_csm_dir, tmp_path):
    partial = shutil.copytree(tiny_csm_dir, tmp_path / "partial")
    (partial / "tokenizer.json").unlink()  # an interrupted download
    with pytest.raises(CheckpointError, match="has no tokenizer: expected tokenizer.json"):
        CsmSpeech.load(partial, CPU, torch.float32)


def test_wrong_model_type(tiny_csm_dir, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    with pytest.raises(CheckpointError, match="holds a 'qwen2' checkpoint: expected model_type 'csm'"):
        CsmSpeech.load(other, CPU, torch.float32)


def test_codebook_heads_are_stored_row_by_row_without_a_copy(tiny_csm_dir, tiny_csm):
    """The engine's layout changes where the heads' numbers sit, not what the model computes."""
    original = CsmForConditionalGeneration.from_pretrained(tiny_csm_dir).depth_decoder.codebooks_head
    head = tiny_csm.model.depth_decoder.codebooks_head
    assert head.weight.transpose(1, 2).is_contiguous() and not original.weight.transpose(1, 2).is_contiguous()
    engine, _ = tiny_csm.engine(1)
    assert engine.depth_heads[0].data_ptr() == head.weight.data_ptr()  # views of one storage: no second copy
    states = torch.randn(2, 31, head.weight.shape[1])
    with torch.no_grad():
        indices = torch.arange(1, 32)
        torch.testing.assert_close(head(states, indices), original(states, indices))
