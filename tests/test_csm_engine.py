"""The static-cache CSM engine: batching, per-row end of audio, streaming, graph capture, the CLI modes."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from voxport.cli import main
from voxport.models.csm import SynthesisRequest
from voxport.models.csm.engine import CsmEngine
from voxport.models.sampling import SamplingSettings

TEXTS = ["Hi.", "A somewhat longer sentence, so the prompts differ in length."]


def test_batched_rows_equal_single_runs(tiny_csm):
    requests = [SynthesisRequest(text=text, max_frames=9, greedy=True) for text in TEXTS]
    batched = tiny_csm.generate_batch(requests)
    for request, result in zip(requests, batched):
        alone = tiny_csm.generate(request)
        np.testing.assert_array_equal(result.codes, alone.codes)
        np.testing.assert_allclose(result.audio, alone.audio, atol=1e-5)
    assert tiny_csm.prompt_input_ids(requests[0])[0].shape[1] < tiny_csm.prompt_input_ids(requests[1])[0].shape[1]


def test_sampled_batches_follow_the_seed(tiny_csm):
    requests = [SynthesisRequest(text=text, max_frames=6, seed=4) for text in TEXTS]
    first, second = tiny_csm.generate_batch(requests), tiny_csm.generate_batch(requests)
    assert all(np.array_equal(a.codes, b.codes) for a, b in zip(first, second))
    assert not np.array_equal(first[0].codes, first[1].codes)


def test_a_request_samples_the_same_alone_and_in_any_batch(tiny_csm):
    """Each row draws its noise from its own seed: batch order, batch mates and their seeds change nothing."""
    requests = [
        SynthesisRequest(text=text, max_frames=10, min_frames=10, seed=seed)
        for text, seed in ((TEXTS[0], 4), (TEXTS[1], 11), ("A third row with the first row's seed.", 4))
    ]
    alone = [tiny_csm.generate(request) for request in requests]
    for order in ([0, 1, 2], [2, 0, 1], [1, 2]):
        batched = tiny_csm.generate_batch([requests[index] for index in order])
        for index, result in zip(order, batched):
            np.testing.assert_array_equal(result.codes, alone[index].codes)
            np.testing.assert_allclose(result.audio, alone[index].audio, atol=1e-5)
            assert result.seed == requests[index].seed
    assert not np.array_equal(alone[0].codes, alone[1].codes)


def scripted_step(ends: torch.Tensor, calls: list):
    """A stand-in frame step: row r's frame number ends[r] is its end-of-audio frame (all codes 0)."""

    def step(hidden, slot, starts, early, settings, noise):
        index = len(calls)
        calls.append(index)
        frame = torch.ones(len(ends), 32, dtype=torch.long)
        frame[ends == index] = 0
        return frame, hidden

    return step


def scripted_run(model, ends: list[int], max_frames: list[int], min_frames: list[int], calls: list) -> list:
    """The engine's chunks of 4 frames over greedy rows whose frames come from `scripted_step(ends)`."""
    rows = len(ends)
    engine = CsmEngine(model.model, batch=rows)
    return list(
        engine.run(
            torch.zeros(rows, 4, model.config.hidden_size),
            torch.zeros(rows, dtype=torch.long),
            SamplingSettings(greedy=True),
            max_frames,
            min_frames,
            None,
            lambda done: 4,
            scripted_step(torch.tensor(ends), calls),
        )
    )


def test_each_row_ends_on_its_own(tiny_csm):
    calls = []
    chunks = scripted_run(tiny_csm, [3, 10, 99], [12] * 3, [0] * 3, calls)  # row 2 never ends: max 12 frames
    assert [chunk.lengths.tolist() for chunk in chunks] == [[3, 4, 4], [3, 8, 8], [3, 10, 12]]
    assert [chunk.finished for chunk in chunks] == [False, False, True] and len(calls) == 12
    calls.clear()
    chunks = scripted_run(tiny_csm, [3, 5], [40, 40], [0, 0], calls)
    assert chunks[-1].finished and chunks[-1].lengths.tolist() == [3, 5] and len(calls) == 8  # stopped early


def test_each_row_has_its_own_frame_limits(tiny_csm):
    """Rows of different lengths share a batch: each stops at its own limit, none ends before its own minimum."""
    calls = []
    chunks = scripted_run(tiny_csm, [99, 99, 5], [2, 7, 12], [0, 0, 0], calls)
    assert chunks[-1].lengths.tolist() == [2, 7, 5] and chunks[-1].finished and len(calls) == 8


def test_a_batch_of_texts_of_different_lengths_matches_each_text_alone(tiny_csm):
    requests = [
        SynthesisRequest(text=text, max_frames=frames, min_frames=low, seed=3)
        for text, frames, low in (("Short.", 3, 0), ("A longer line than that.", 9, 4), ("Mid.", 6, 6))
    ]
    alone = [tiny_csm.generate(request) for request in requests]
    for index, result in enumerate(tiny_csm.generate_batch(requests)):
        np.testing.assert_array_equal(result.codes, alone[index].codes)
        assert len(result.codes) <= requests[index].max_frames and len(result.codes) >= requests[index].min_frames


def test_both_engines_end_the_audio_on_the_official_rule(fresh_tiny_csm, monkeypatch):
    """Official CSM: a frame whose 32 codebooks are all 0 ends the speech; one with 31 zeros is still audio."""
    frames = torch.ones(6, 32, dtype=torch.long)
    frames[2, :31] = 0  # transformers' generate would stop here (its rule looks at the first 31 codebooks only)
    frames[4] = 0  # the end

    def step(hidden, slot, starts, early, settings, noise):
        return frames[int(slot) - 4].unsqueeze(0), hidden  # slots start after the 4 prompt positions

    chunks = list(
        CsmEngine(fresh_tiny_csm.model, batch=1).run(
            torch.zeros(1, 4, fresh_tiny_csm.config.hidden_size),
            torch.zeros(1, dtype=torch.long),
            SamplingSettings(greedy=True),
            [6],
            [0],
            None,
            lambda done: 6,
            step,
        )
    )
    assert chunks[-1].lengths.tolist() == [4]
    monkeypatch.setattr(fresh_tiny_csm.model, "generate", lambda **inputs: frames.unsqueeze(0))
    result = fresh_tiny_csm.generate_with_transformers(SynthesisRequest(text="Ends.", max_frames=6, greedy=True))
    np.testing.assert_array_equal(result.codes, frames[:4].numpy())


def test_stream_joins_into_the_one_shot_result(tiny_csm):
    """Tolerance: the joined chunks differ from decoding all codes at once by at most 1e-5 per sample."""
    request = SynthesisRequest(text="Streaming, chunk by chunk.", max_frames=21, min_frames=21, seed=9)
    chunks = list(tiny_csm.stream(request, first_chunk=2, chunk=4))
    assert [len(chunk.codes) for chunk in chunks] == [2, 4, 4, 4, 4, 3]
    assert all(later.seconds_since_start >= earlier.seconds_since_start for earlier, later in zip(chunks, chunks[1:]))
    codes = np.concatenate([chunk.codes for chunk in chunks])
    one_shot = tiny_csm.generate(request)
    np.testing.assert_array_equal(codes, one_shot.codes)  # the same noise, drawn chunk by chunk
    joined = np.concatenate([chunk.audio for chunk in chunks])
    assert joined.shape == one_shot.audio.shape == (21 * 1920,)
    assert np.max(np.abs(joined - one_shot.audio)) < 1e-5


def test_frame_step_is_one_graph(tiny_csm):
    """The step torch.compile captures whole (fullgraph: no graph break), as CUDA graphs need; same codes."""
    engine = CsmEngine(tiny_csm.model, batch=1)
    captured = torch.compile(engine.frame, backend="eager", fullgraph=True)
    request = SynthesisRequest(text="One graph.", max_frames=3, min_frames=3, seed=1)
    embeds, starts = tiny_csm.prompt_embeds(request), torch.zeros(1, dtype=torch.long)
    for greedy in (True, False):
        settings = SamplingSettings(greedy=greedy)
        generator = torch.Generator().manual_seed(0)
        eager = list(engine.run(embeds, starts, settings, [3], [3], [generator], lambda done: 3))
        generator = torch.Generator().manual_seed(0)
        graph = list(engine.run(embeds, starts, settings, [3], [3], [generator], lambda done: 3, captured))
        assert torch.equal(eager[0].codes, graph[0].codes)


def voxport(*args):
    return subprocess.run(
        [sys.executable, "-m", "voxport", *map(str, args)], capture_output=True, text=True, timeout=600
    )


def test_cli_stream_batch_and_engines(tiny_csm_dir, tmp_path):
    streamed = voxport(
        "tts",
        "Streamed to the file.",
        "--model",
        tiny_csm_dir,
        "-o",
        tmp_path / "s.wav",
        "--stream",
        "--max-tokens",
        12,
        "--min-tokens",
        12,
        "--seed",
        3,
        "--json",
    )
    assert streamed.returncode == 0, streamed.stderr
    report = json.loads(streamed.stdout)
    assert report["frames"] == 12 and 0 < report["time_to_first_audio_seconds"] < report["generation_seconds"]
    assert sf.info(tmp_path / "s.wav").frames == 12 * 1920 and report["seed"] == 3

    (tmp_path / "lines.txt").write_text("First line.\n\n  Second line, longer.  \nThird.\n")
    batch = voxport(
        "tts",
        "--batch-file",
        tmp_path / "lines.txt",
        "--output-dir",
        tmp_path / "out",
        "--model",
        tiny_csm_dir,
        "--max-tokens",
        5,
        "--min-tokens",
        5,
        "--seed",
        8,
        "--codes-out",
        tmp_path / "codes",
        "--json",
    )
    assert batch.returncode == 0, batch.stderr
    report = json.loads(batch.stdout)
    assert report["batch"] == 3 and report["frames_per_output"] == [5, 5, 5]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0000.wav", "0001.wav", "0002.wav"]
    alone = voxport(
        "tts",
        "Second line, longer.",
        "-o",
        tmp_path / "alone.wav",
        "--model",
        tiny_csm_dir,
        "--max-tokens",
        5,
        "--min-tokens",
        5,
        "--seed",
        8,
        "--codes-out",
        tmp_path / "alone.npy",
    )
    assert alone.returncode == 0, alone.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "codes" / "0001.npy"), np.load(tmp_path / "alone.npy"))
    np.testing.assert_array_equal(sf.read(tmp_path / "out" / "0001.wav")[0], sf.read(tmp_path / "alone.wav")[0])
    assert not np.array_equal(np.load(tmp_path / "codes" / "0000.npy"), np.load(tmp_path / "alone.npy"))

    compared = voxport(
        "tts",
        "Both engines.",
        "--model",
        tiny_csm_dir,
        "-o",
        tmp_path / "t.wav",
        "--engine",
        "transformers",
        "--greedy",
        "--max-tokens",
        6,
        "--codes-out",
        tmp_path / "t.npy",
        "--json",
    )
    ours = voxport(
        "tts",
        "Both engines.",
        "--model",
        tiny_csm_dir,
        "-o",
        tmp_path / "v.wav",
        "--greedy",
        "--max-tokens",
        6,
        "--codes-out",
        tmp_path / "v.npy",
        "--json",
    )
    assert compared.returncode == ours.returncode == 0, compared.stderr + ours.stderr
    assert json.loads(compared.stdout)["engine"] == "transformers"
    np.testing.assert_array_equal(np.load(tmp_path / "t.npy"), np.load(tmp_path / "v.npy"))


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["tts", "text", "--batch-file", "lines.txt"],
            "give the text to speak, --input-file with a text, or --batch-file",
        ),
        (["tts"], "give the text to speak, --input-file with a text, or --batch-file"),
        (["tts", "--batch-file", "empty.txt"], "has no text"),
        (["tts", "--batch-file", "missing.txt"], "cannot read --batch-file"),
        (["tts", "text", "--stream", "--engine", "transformers"], "--engine transformers does not stream"),
        (
            ["tts", "text", "--min-tokens", "3", "--engine", "transformers"],
            "does not stream, batch, compile or take --min-tokens",
        ),
    ],
)
def test_cli_mode_errors(argv, message, tiny_csm_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lines.txt").write_text("one\n")
    (tmp_path / "empty.txt").write_text("\n  \n")
    assert main([*argv, "--model", str(tiny_csm_dir)]) == 1
    assert message in capsys.readouterr().err


def test_compile_on_cpu_says_it_runs_eagerly(tiny_csm_dir, tmp_path, capsys):
    assert (
        main(
            [
                "tts",
                "Eager.",
                "--model",
                str(tiny_csm_dir),
                "-o",
                str(tmp_path / "e.wav"),
                "--compile",
                "--max-tokens",
                "2",
                "--json",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "--compile ignored: generation steps are captured as graphs on CUDA only" in captured.err
    assert json.loads(captured.out)["compiled"] is False


def test_expanded_heads_path_gives_the_same_codes(tiny_csm_dir, monkeypatch):
    """The path NPU and MPS take (key/value heads expanded instead of SDPA's enable_gqa) agrees exactly."""
    from voxport.models.csm import CsmSpeech
    from voxport.runtime.devices import BACKENDS

    request = SynthesisRequest(text="Either way.", max_frames=6, greedy=True)
    grouped = CsmSpeech.load(tiny_csm_dir, torch.device("cpu"), torch.float32).generate(request).codes
    monkeypatch.setattr(BACKENDS["cpu"], "grouped_query_attention", False)
    expanded = CsmSpeech.load(tiny_csm_dir, torch.device("cpu"), torch.float32).generate(request).codes
    np.testing.assert_array_equal(grouped, expanded)
