"""Covo-Audio-Chat a2t: loading, prompts, generation parity, multi-round chat with a reused cache, the CLI."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file, save_file
from transformers import LogitsProcessor, LogitsProcessorList

from voxport.cli import main
from voxport.errors import CheckpointError, InputError
from voxport.models.base import ChatSettings
from voxport.models.covo import CovoAudioChat
from voxport.models.covo.frontend import prepare_clip
from voxport.models.covo.generation import RepetitionPenalties, TokenEngine
from voxport.models.covo.prompt import SYSTEM_PROMPT
from voxport.models.sampling import SamplingSettings

CPU = torch.device("cpu")
GREEDY = ChatSettings(mode="a2t", max_new_tokens=12, greedy=True)


class RecentRepeats(LogitsProcessor):
    """The reference's second penalty, written for this test: ids among the last 8 are penalised again."""

    def __call__(self, input_ids, scores):
        for row, ids in enumerate(input_ids):
            for token in set(ids[-8:].tolist()):
                value = scores[row, token]
                scores[row, token] = value * 1.05 if value < 0 else value / 1.05
        return scores


def test_tiny_checkpoint_has_the_real_layout(tiny_covo_dir):
    names = {path.name for path in tiny_covo_dir.iterdir()}
    assert {"config.json", "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json"} <= names
    assert len([name for name in names if name.startswith("model-0000")]) >= 2
    config = json.loads((tiny_covo_dir / "config.json").read_text())
    assert config["model_type"] == "covo_audio" and config["adapter_downsample"] == 8
    assert config["llm_config"]["vocab_size"] == config["audio_token_index"] + 16384
    prefixes = {
        key.split(".")[0]
        for key in json.loads((tiny_covo_dir / "model.safetensors.index.json").read_text())["weight_map"]
    }
    assert prefixes == {"llm", "encoder", "audio_adapter"}


def test_prompt_is_the_reference_prompt(tiny_covo):
    ids = tiny_covo.prompt_ids(3, first_round=True)[0]
    text = tiny_covo.tokenizer.decode(ids)
    assert text == (
        "<|im_start|>system\n" + SYSTEM_PROMPT + "<|im_end|>\n<|im_start|>user\n"
        "<|begofcAUDIO|><|cAUDIO|><|cAUDIO|><|cAUDIO|><|endofcAUDIO|><|im_end|>\n<|im_start|>assistant\n"
    )
    later = tiny_covo.tokenizer.decode(tiny_covo.prompt_ids(1, first_round=False)[0])
    assert later == "\n<|im_start|>user\n<|begofcAUDIO|><|cAUDIO|><|endofcAUDIO|><|im_end|>\n<|im_start|>assistant\n"
    slot = tiny_covo.tokenizer.convert_tokens_to_ids("<|cAUDIO|>")
    assert int((ids == slot).sum()) == 3


def test_audio_features_fill_the_placeholders(tiny_covo, speech_clips):
    clip = prepare_clip(speech_clips[0])
    ids = tiny_covo.prompt_ids(clip.placeholders, first_round=True)
    embeds = tiny_covo.prompt_embeds(ids, clip)[0]
    features = tiny_covo.audio_features(clip)
    assert features.shape == (188, 64)  # one 30 s segment: 1500 encoder frames / 8
    slots = ids[0] == tiny_covo.slot_id
    torch.testing.assert_close(embeds[slots], features[: clip.placeholders])
    text = tiny_covo.network.llm.get_input_embeddings()(ids)[0]
    torch.testing.assert_close(embeds[~slots], text[~slots])


def test_round_zero_equals_transformers_generate(tiny_covo, speech_clips):
    """Greedy with both penalties, against transformers' own generate on the same embeddings."""
    clip = prepare_clip(speech_clips[0])
    ids = tiny_covo.prompt_ids(clip.placeholders, first_round=True)
    embeds = tiny_covo.prompt_embeds(ids, clip).clone()
    stop = tiny_covo.token_id("<|endoftext|>")
    ours = (
        TokenEngine(tiny_covo.network.llm, True)
        .generate(embeds, ids, stop, 12, SamplingSettings(greedy=True), RepetitionPenalties(), None)
        .ids
    )
    theirs = tiny_covo.network.llm.generate(
        input_ids=ids,
        inputs_embeds=embeds,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=12,
        do_sample=False,
        repetition_penalty=1.05,
        logits_processor=LogitsProcessorList([RecentRepeats()]),
        eos_token_id=stop,
        pad_token_id=stop,
    )
    assert ours == theirs[0, ids.shape[1] :].tolist()[: len(ours)] and len(ours) == 12


def test_two_rounds_are_deterministic_and_reuse_the_cache(tiny_covo, speech_clips):
    first = tiny_covo.chat(GREEDY)
    rounds = [first.say(clip) for clip in speech_clips]
    again = tiny_covo.chat(GREEDY)
    assert [(r.text_token_ids, r.audio_codes) for r in rounds] == [
        (r.text_token_ids, r.audio_codes) for r in (again.say(clip) for clip in speech_clips)
    ]
    assert [r.audio_features for r in rounds] == [52, 33]
    second_prompt = tiny_covo.prompt_ids(33, first_round=False).shape[1]
    assert rounds[1].prefill_positions == second_prompt  # only the new prompt is run
    generated_0 = len(rounds[0].text_token_ids) + len(rounds[0].audio_codes)
    assert rounds[1].cache_positions_before == rounds[0].prefill_positions + generated_0 - 1
    assert first.engine.positions == rounds[1].cache_positions_before + second_prompt + 12 - 1


def test_cached_round_equals_recomputing_the_whole_history(tiny_covo, speech_clips):
    chat = tiny_covo.chat(GREEDY)
    round_0, round_1 = chat.say(speech_clips[0]), chat.say(speech_clips[1])
    clips = [prepare_clip(clip) for clip in speech_clips]
    ids_0 = tiny_covo.prompt_ids(clips[0].placeholders, first_round=True)
    ids_1 = tiny_covo.prompt_ids(clips[1].placeholders, first_round=False)
    offset = tiny_covo.config.audio_token_index
    generated = round_0.text_token_ids + [code + offset for code in round_0.audio_codes]
    assert len(round_0.text_token_ids) + len(round_0.audio_codes) == 12 and not round_0.stopped
    # History as the cache holds it: round 0's prompt and every generated token but the last.
    replies = tiny_covo.network.llm.get_input_embeddings()(torch.tensor([generated[:-1]]))
    history = torch.cat(
        [tiny_covo.prompt_embeds(ids_0, clips[0]), replies, tiny_covo.prompt_embeds(ids_1, clips[1])], 1
    )
    stop = tiny_covo.token_id("<|endoftext|>")
    recomputed = TokenEngine(tiny_covo.network.llm, True).generate(
        history, ids_1, stop, 12, SamplingSettings(greedy=True), RepetitionPenalties(), None
    )
    assert tiny_covo.split_output(recomputed.ids) == (round_1.text_token_ids, round_1.audio_codes)


def test_sampled_rounds_follow_the_seed(tiny_covo, speech_clips):
    settings = ChatSettings(max_new_tokens=10, seed=5, temperature=1.5, top_p=0.95, top_k=0)
    runs = []
    for _ in range(2):
        chat = tiny_covo.chat(settings)
        runs.append([chat.say(clip).text_token_ids + chat.rounds[-1].audio_codes for clip in speech_clips])
    assert runs[0] == runs[1]
    other = tiny_covo.chat(ChatSettings(max_new_tokens=10, seed=6, temperature=1.5, top_p=0.95, top_k=0))
    other_run = [other.say(clip).text_token_ids + other.rounds[-1].audio_codes for clip in speech_clips]
    assert other_run[0] == runs[0][0]  # round 0 is greedy whatever the seed
    assert other_run[1] != runs[0][1]


def test_long_audio_uses_every_segment(tiny_covo, speech_clips):
    speech = prepare_clip(speech_clips[0]).samples
    clip = prepare_clip(np.tile(speech, 9)[: 65 * 24000])
    assert tiny_covo.audio_features(clip).shape[0] == 3 * 188
    turn = tiny_covo.chat(ChatSettings(max_new_tokens=3, greedy=True)).say(clip)
    assert turn.audio_features == 407 and turn.prefill_positions > 407


def test_forward_logits_stages(tiny_covo):
    example = tiny_covo.example_inputs()
    outputs = tiny_covo.forward_logits(example)
    assert outputs["mel"].shape == (1, 128, 3000) and outputs["encoder"].shape == (1, 1500, 32)
    assert outputs["adapter"].shape == (1, 188, 64)
    assert outputs["logits"].shape[-1] == tiny_covo.config.llm.vocab_size
    again = tiny_covo.forward_logits(tiny_covo.example_inputs())
    assert all(torch.equal(outputs[name], again[name]) for name in outputs)


def test_generation_stage_runs_the_chat_engine_over_two_rounds(tiny_covo):
    """The accuracy check's cached rounds go through the token engine a chat runs; on a sound engine they give
    the whole sequence's teacher-forced logits at each round's last prompt position and its reply's."""
    stages = {stage.name: stage for stage in tiny_covo.accuracy_stages(tiny_covo.accuracy_examples()["english"])}
    llm, rounds = stages["llm"], stages["generation"].inputs["rounds"]
    whole = llm.run(tiny_covo, llm.inputs)
    positions, start = [], 0
    for prompt, reply in rounds:
        start += len(prompt)
        positions += range(start - 1, start + len(reply) - 1)
        start += len(reply) - 1
    cached = stages["generation"].run(tiny_covo, stages["generation"].inputs)
    assert cached.shape == (sum(len(reply) for _, reply in rounds), tiny_covo.config.llm.vocab_size)
    torch.testing.assert_close(cached, whole[positions].float(), rtol=1e-4, atol=1e-4)


def test_validation_hooks(tiny_covo):
    example = tiny_covo.example_inputs()
    tokens = tiny_covo.greedy_tokens(example, 5)
    logits = tiny_covo.token_logits(example, tokens)
    assert tokens.shape == (5,) and logits.shape == (5, tiny_covo.config.llm.vocab_size)
    assert torch.equal(logits.argmax(-1), tokens)  # plain greedy: each token is the teacher-forced argmax
    assert tiny_covo.tokens_to_audio(tokens) is None and tiny_covo.run_fixed(tiny_covo.bench_inputs("short"), 4) is None
    llm = tiny_covo.network.llm
    expected = sum(p.numel() for m in (llm.model.layers, llm.model.norm, llm.lm_head) for p in m.parameters()) * 4
    assert tiny_covo.weight_bytes_per_step() == expected


def copy_checkpoint(source, target):
    shutil.copytree(source, target)
    return target


def test_strict_loading_names_a_removed_key(tiny_covo_dir, tmp_path):
    broken = copy_checkpoint(tiny_covo_dir, tmp_path / "broken")
    index = json.loads((broken / "model.safetensors.index.json").read_text())
    shard = broken / index["weight_map"]["encoder.conv1.weight"]
    weights = load_file(shard)
    del weights["encoder.conv1.weight"]
    save_file(weights, shard, metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="missing encoder.conv1.weight"):
        CovoAudioChat.load(broken, CPU, torch.float32)


def test_unexpected_key_and_missing_shard(tiny_covo_dir, tmp_path):
    extra = copy_checkpoint(tiny_covo_dir, tmp_path / "extra")
    first_shard = sorted(extra.glob("model-*.safetensors"))[0]
    weights = load_file(first_shard)
    weights["audio_adapter.downsample_layers.3.linear1.weight"] = torch.zeros(2, 2)
    save_file(weights, first_shard, metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="unexpected audio_adapter.downsample_layers.3.linear1.weight"):
        CovoAudioChat.load(extra, CPU, torch.float32)
    gap = copy_checkpoint(tiny_covo_dir, tmp_path / "gap")
    sorted(gap.glob("model-*.safetensors"))[-1].unlink()
    with pytest.raises(CheckpointError, match="missing shard model-00003-of-00003.safetensors"):
        CovoAudioChat.load(gap, CPU, torch.float32)


def test_a_checkpoint_without_its_tokenizer_names_the_files(tiny_covo_dir, tmp_path):
    partial = copy_checkpoint(tiny_covo_dir, tmp_path / "partial")
    (partial / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="has no tokenizer: expected tokenizer.json or vocab.json with merges"):
        CovoAudioChat.load(partial, CPU, torch.float32)


def test_loaded_weights_are_the_files_weights(tiny_covo, tiny_covo_dir):
    index = json.loads((tiny_covo_dir / "model.safetensors.index.json").read_text())
    name = "audio_adapter.downsample_layers.2.linear2.weight"
    stored = load_file(tiny_covo_dir / index["weight_map"][name])[name]
    assert torch.equal(tiny_covo.network.state_dict()[name], stored.float())
    assert not any(p.is_meta for p in tiny_covo.network.parameters())


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"mode": "t2a"}, "unknown mode 't2a'"),
        ({"max_new_tokens": 0}, "max new tokens is 0"),
        ({"top_p": 0.0}, "top-p is 0.0"),
        ({"temperature": -1.0}, "temperature is -1.0"),
        ({"temperature": float("nan")}, "temperature is nan"),
        ({"top_p": float("nan")}, "top-p is nan"),
        ({"seed": 2**64}, "seed is 18446744073709551616"),
    ],
)
def test_bad_settings(fields, message):
    with pytest.raises(InputError, match=message):
        ChatSettings(**fields)


def test_prompt_longer_than_the_context(tiny_covo_dir, tmp_path, speech_clips):
    short = copy_checkpoint(tiny_covo_dir, tmp_path / "short")
    config = json.loads((short / "config.json").read_text())
    config["llm_config"]["max_position_embeddings"] = 200
    (short / "config.json").write_text(json.dumps(config))
    model = CovoAudioChat.load(short, CPU, torch.float32)
    long_speech = np.tile(prepare_clip(speech_clips[0]).samples, 3)  # 24.5 s: 154 placeholders
    with pytest.raises(InputError, match=r"plus the prompt \(250 positions\) exceeds the model's context of 200"):
        model.chat(GREEDY).say(long_speech)
    with pytest.raises(InputError, match=r"prompt \(148\) \+ max new tokens \(100\) .* lower --max-new-tokens"):
        model.chat(ChatSettings(max_new_tokens=100)).say(speech_clips[0])


def test_chat_cli_end_to_end(tiny_covo_dir, speech_clips):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "voxport",
            "chat",
            "--model",
            str(tiny_covo_dir),
            "--audio",
            str(speech_clips[0]),
            "--audio",
            str(speech_clips[1]),
            "--max-new-tokens",
            "6",
            "--seed",
            "3",
            "--json",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["init_seconds"] > 0 and report["load_seconds"] > 0 and report["seed"] == 3
    assert [r["audio_features"] for r in report["rounds"]] == [52, 33]
    for turn in report["rounds"]:
        assert set(turn) >= {"text", "text_token_ids", "audio_codes", "audio_features", "generation_seconds"}
        assert len(turn["text_token_ids"]) + len(turn["audio_codes"]) == 6 and turn["generation_seconds"] > 0


def test_chat_cli_prints_each_round(tiny_covo_dir, speech_clips, capsys):
    assert main(["chat", "--model", str(tiny_covo_dir), "--audio", str(speech_clips[1]), "--max-new-tokens", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("model load") and "weights" in lines[0]
    assert lines[1].startswith(f"round 0 [{speech_clips[1]}, 33 features;")


@pytest.mark.parametrize("case", ["missing audio", "silent audio", "unknown mode", "missing shard", "not covo"])
def test_chat_bad_input_is_one_clear_line(case, tmp_path, tiny_covo_dir, tiny_csm_dir, speech_clips, capsys):
    sf.write(tmp_path / "quiet.wav", np.zeros(8000, dtype=np.float32), 16000)
    gap = copy_checkpoint(tiny_covo_dir, tmp_path / "gap")
    sorted(gap.glob("model-*.safetensors"))[0].unlink()
    speech = str(speech_clips[1])
    argv, expected = {
        "missing audio": (["--model", str(tiny_covo_dir), "--audio", str(tmp_path / "no.wav")], "does not exist"),
        "silent audio": (["--model", str(tiny_covo_dir), "--audio", str(tmp_path / "quiet.wav")], "is silent"),
        "unknown mode": (["--model", str(tiny_covo_dir), "--audio", speech, "--mode", "t2t"], "invalid choice"),
        "missing shard": (["--model", str(gap), "--audio", speech], "missing shard model-00001-of-00003"),
        "not covo": (["--model", str(tiny_csm_dir), "--audio", speech], "expected a model that answers audio"),
    }[case]
    try:
        code = main(["chat", *argv])
    except SystemExit as exit_:
        code = exit_.code
    errors = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and expected in errors[-1] and "Traceback" not in "\n".join(errors)
