"""Covo-Audio-Chat spoken replies (a2ta): token2wav loading, length rule, seeding, precision, the CLI."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import shared_data
from voxport.cli.chat import save_spoken_reply
from voxport.errors import CheckpointError, InputError
from voxport.models.base import ChatRound, ChatSettings
from voxport.models.covo import CovoAudioChat
from voxport.models.covo.token2wav import SpeakerPrompt, Token2Wav, Token2WavConfig

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def speech(tiny_covo_dir) -> Token2Wav:
    return Token2Wav.load(tiny_covo_dir / "token2wav", CPU, torch.float32)


def test_token2wav_files_and_names(tiny_covo_dir):
    folder = tiny_covo_dir / "token2wav"
    assert {p.name for p in folder.iterdir()} >= {"model.pt", "global_mean_var.npy", "prompt", "config.json"}
    keys = torch.load(folder / "model.pt", weights_only=True).keys()
    for name in [
        "wavegan.conv_pre.weight_g",
        "wavegan.conv_pre.weight_v",
        "wavegan.ups.0.0.weight_g",
        "wavegan.resblocks.0.activations.0.act.alpha",
        "token2latent.blocks.0.attn.q_proj.weight",
        "token2latent.blocks.0.modulation_layer.1.weight",
        "token2latent.token_proj.1.weight",
    ]:
        assert name in keys


def test_the_released_config_is_the_default():
    assert Token2WavConfig.from_file(shared_data("token2wav-config.json")) == Token2WavConfig()


@pytest.mark.parametrize("codes", [1, 4, 9])
def test_output_length_rule(speech, codes):
    """4 (P + N) - L latent frames at 100 Hz, 240 samples each; the tiny prompt has P = 20, L = 83 (like 291/1167)."""
    prompt_codes, prompt_frames = speech.prompt.tokens.shape[1], speech.prompt.latents.shape[1]
    assert (prompt_codes, prompt_frames) == (20, 83)
    waveform = speech.render(list(range(100, 100 + codes)), seed=0)
    assert waveform.dtype == np.float32 and waveform.shape == ((4 * (prompt_codes + codes) - prompt_frames) * 240,)
    assert speech.frames_for(codes) * 240 == len(waveform) == (4 * codes - 3) * 240


def test_same_seed_same_waveform(speech):
    codes = [7, 70, 700, 7000]
    first, second = speech.render(codes, seed=11), speech.render(codes, seed=11)
    assert np.array_equal(first, second)
    assert not np.array_equal(first, speech.render(codes, seed=12))


def test_bfloat16_waveform_is_close_to_float32(tiny_covo_dir, speech):
    """Metric: relative L2 error ||bf16 - fp32|| / ||fp32|| of the waveforms (same codes, same seed)."""
    codes = list(range(200, 230))
    reference = speech.render(codes, seed=3)
    low = Token2Wav.load(tiny_covo_dir / "token2wav", CPU, torch.bfloat16).render(codes, seed=3)
    relative_error = np.linalg.norm(low - reference) / np.linalg.norm(reference)
    assert 0 < relative_error < 0.2


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_the_vocoder_loads_its_float32_weights_as_stored(tiny_covo_dir, dtype):
    """The vocoder runs in float32: its weights come from the file as they are, not rounded to the DiT's dtype."""
    stored = torch.load(tiny_covo_dir / "token2wav" / "model.pt", weights_only=True)
    network = Token2Wav.load(tiny_covo_dir / "token2wav", CPU, dtype).network
    loaded = dict(network.named_parameters())
    vocoder = [key for key in stored if key.startswith("wavegan.") and key in loaded]
    assert vocoder and all(stored[key].dtype == torch.float32 for key in vocoder)
    assert all(torch.equal(loaded[key], stored[key]) for key in vocoder)
    assert network.token2latent.blocks[0].attn.q_proj.weight.dtype == dtype  # the DiT in the model's dtype


def test_bad_codes(speech):
    with pytest.raises(InputError, match="no audio codes"):
        speech.render([])
    with pytest.raises(InputError, match="must lie in 0..16383"):
        speech.render([5, 16384])


def test_prompt_shapes_are_checked(tiny_covo_dir, tmp_path):
    tiny = Token2WavConfig.from_file(tiny_covo_dir / "token2wav" / "config.json")
    released = shared_data("prompt")
    SpeakerPrompt.from_directory(released, Token2WavConfig())  # the released voice fits the model
    with pytest.raises(CheckpointError, match=r"prompt_latent.npy has shape \(1, 1167, 64\).*expected \(1, L, 8\)"):
        SpeakerPrompt.from_directory(released, tiny)
    prompt = tmp_path / "prompt"
    shutil.copytree(tiny_covo_dir / "token2wav" / "prompt", prompt)
    np.save(prompt / "speaker_embed.npy", np.zeros((1, 17), dtype=np.float32))
    with pytest.raises(CheckpointError, match=r"speaker_embed.npy has shape \(1, 17\).*expected \(1, 16\)"):
        SpeakerPrompt.from_directory(prompt, tiny)
    (prompt / "prompt_token.npy").unlink()
    with pytest.raises(CheckpointError, match="prompt_token.npy is missing"):
        SpeakerPrompt.from_directory(prompt, tiny)


def test_strict_token2wav_weights(tiny_covo_dir, tmp_path):
    folder = tmp_path / "token2wav"
    shutil.copytree(tiny_covo_dir / "token2wav", folder)
    state = torch.load(folder / "model.pt", weights_only=True)
    del state["wavegan.conv_post.weight_v"]
    state["wavegan.extra.weight"] = torch.zeros(1)
    torch.save({"model": {f"module.{key}": value for key, value in state.items()}}, folder / "model.pt")
    with pytest.raises(CheckpointError, match="missing wavegan.conv_post.weight_v.*unexpected wavegan.extra.weight"):
        Token2Wav.load(folder, CPU, torch.float32)


def test_a2ta_needs_token2wav(tiny_covo_dir, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(tiny_covo_dir, bare, ignore=shutil.ignore_patterns("token2wav"))
    model = CovoAudioChat.load(bare, CPU, torch.float32)
    with pytest.raises(CheckpointError, match="speaker prompt file .*prompt_token.npy is missing"):
        model.chat(ChatSettings(mode="a2ta"))


def test_a2ta_round_without_codes_writes_no_wav(tiny_covo, speech_clips, tmp_path, capsys):
    end = tiny_covo.token_id("<|im_end|>")
    chat = tiny_covo.chat(ChatSettings(mode="a2ta", greedy=True, max_new_tokens=8))
    pick = chat.engine.pick

    def reply_ends_at_once(logits, *rest):
        boosted = logits.clone()
        boosted[..., end] += 1e4
        return pick(boosted, *rest)

    chat.engine.pick = reply_ends_at_once  # this conversation's LLM now favours the end of the reply
    turn = chat.say(speech_clips[1])
    assert turn.stopped and turn.audio_codes == [] and turn.speech is None and turn.decode_seconds is None
    report = save_spoken_reply(turn, tmp_path, 24000)
    assert report == {"wav": None, "audio_seconds": 0.0} and list(tmp_path.iterdir()) == []
    assert "round 0 has no audio codes in its reply, so no turn_0.wav was written" in capsys.readouterr().err


def test_a2ta_chat_end_to_end(tiny_covo_dir, speech_clips, tmp_path):
    out = tmp_path / "replies"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "voxport",
            "chat",
            "--model",
            str(tiny_covo_dir),
            "--mode",
            "a2ta",
            "--audio",
            str(speech_clips[0]),
            "--audio",
            str(speech_clips[1]),
            "--max-new-tokens",
            "24",
            "--output-dir",
            str(out),
            "--seed",
            "4",
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
    assert report["mode"] == "a2ta" and report["speech_load_seconds"] > 0
    for index, turn in enumerate(report["rounds"]):
        assert turn["wav"] == str(out / f"turn_{index}.wav") and turn["decode_seconds"] > 0
        samples, rate = sf.read(turn["wav"], dtype="float32")
        assert rate == 24000 and len(samples) == (4 * len(turn["audio_codes"]) - 3) * 240
        assert turn["audio_seconds"] == pytest.approx(len(samples) / 24000)
        assert np.abs(samples).max() > 0


def test_a2ta_output_dir_that_is_a_file(tiny_covo_dir, speech_clips, tmp_path, capsys):
    from voxport.cli import main

    blocker = tmp_path / "taken"
    blocker.write_text("a file")
    code = main(
        [
            "chat",
            "--model",
            str(tiny_covo_dir),
            "--mode",
            "a2ta",
            "--audio",
            str(speech_clips[1]),
            "--output-dir",
            str(blocker),
        ]
    )
    assert code == 1 and "is a file: expected a directory" in capsys.readouterr().err


def test_chat_round_json_leaves_the_waveform_out():
    turn = ChatRound(
        index=0,
        text="",
        text_token_ids=[],
        audio_codes=[1],
        reply_ids=[],
        audio_features=3,
        generation_seconds=0.1,
        prefill_positions=5,
        cache_positions_before=0,
        stopped=True,
        speech=np.zeros(240),
        decode_seconds=0.2,
    )
    assert "speech" not in turn.to_json() and turn.to_json()["decode_seconds"] == 0.2
