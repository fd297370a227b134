"""One request, every door: the same seeded words give byte-identical WAVs through `voxport tts`, `voxport tts
--batch-file`, `voxport batch tts` on Ray, POST /v1/audio/speech (openai SDK) and Python, because one service
makes them all. A short line with the family's default length budget, and a paragraph of 700+ characters
(spoken whole, chunk by chunk) under the same cap given the way each door takes it."""

import json

import openai
import pytest
import torch

from voxport.audio.io import write_audio
from voxport.cli import main
from voxport.models.registry import load_model
from voxport.services.speech import SpeechRequest, SpeechService

SEED = 5
SHORT = "Hello there, this is one short line."
PARAGRAPH = " ".join(
    [
        "The port was finished late on a Friday, and the team ran every check again before anyone went home.",
        "First the logits, against the float32 reference on the CPU, block by block, with the benchmark beside them.",
        "Then the same tokens twice, greedy and sampled, to be sure that nothing in the device drifted between runs.",
        "Then the speed of every configuration, short and long, with the memory-bandwidth bound printed next to it.",
        "Then the list of operators the device runs, with the gaps that still needed a fix from the runtime team.",
        "Only then did they write the report, with the numbers and the plots side by side, and send it around.",
        "Nobody argued with it on Monday: every figure had the command that made it, and every check could fail.",
    ]
)
CAP_FRAMES = 12  # the paragraph's cap per chunk, in each door's own terms: frames, or 0.96 s
CASES = {"short": (SHORT, {}), "paragraph": (PARAGRAPH, {"frames": CAP_FRAMES})}


def cli_cap(case: str) -> list[str]:
    return ["--max-tokens", str(CAP_FRAMES)] if CASES[case][1] else []


@pytest.fixture(scope="module")
def through_the_cli(tiny_csm_dir, tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("cli")
    wavs = {}
    for case, (text, _) in CASES.items():
        assert (
            main(
                [
                    "tts",
                    text,
                    "--model",
                    str(tiny_csm_dir),
                    "--device",
                    "cpu",
                    "--seed",
                    str(SEED),
                    "-o",
                    str(out / f"{case}.wav"),
                    *cli_cap(case),
                ]
            )
            == 0
        )
        wavs[case] = (out / f"{case}.wav").read_bytes()
    return wavs


def test_the_paragraph_is_long_enough_to_be_spoken_in_chunks(tiny_csm):
    plan = SpeechService(tiny_csm).plan(SpeechRequest(PARAGRAPH, seed=SEED))
    assert len(PARAGRAPH) >= 700 and len(plan.chunks) >= 4


def test_a_batch_file_speaks_every_line_as_tts_does(through_the_cli, tiny_csm_dir, tmp_path):
    """The README's example as written: lines of different lengths, no --max-tokens, one batch."""
    batches = {
        "short": f"{SHORT}\nA second, longer line, which the model gets a longer budget for.\nOk.\n",
        "paragraph": PARAGRAPH + "\n",
    }
    for case, lines in batches.items():
        batch_file = tmp_path / f"{case}.txt"
        batch_file.write_text(lines)
        command = ["tts", "--batch-file", str(batch_file), "--output-dir", str(tmp_path / case), "--seed", str(SEED)]
        assert main([*command, "--model", str(tiny_csm_dir), "--device", "cpu", *cli_cap(case)]) == 0
        assert (tmp_path / case / "0000.wav").read_bytes() == through_the_cli[case]


def test_voxport_batch_on_ray_speaks_rows_whole_as_tts_does(through_the_cli, ray_runtime, tiny_csm_dir, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "".join(
            json.dumps({"id": case, "text": text, "seed": SEED, **({"max_tokens": CAP_FRAMES} if cap else {})}) + "\n"
            for case, (text, cap) in CASES.items()
        )
    )
    assert (
        main(
            [
                "batch",
                "tts",
                str(rows),
                "--model",
                str(tiny_csm_dir),
                "--output-dir",
                str(tmp_path / "out"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    for case in CASES:
        assert (tmp_path / "out" / f"{case}.wav").read_bytes() == through_the_cli[case], case


def test_http_with_the_openai_sdk_gives_the_same_wav(through_the_cli, live_server):
    client = openai.OpenAI(base_url=f"{live_server.base}/v1", api_key="unused", max_retries=0)
    for case, (text, cap) in CASES.items():
        extra = {"seed": SEED, **({"max_seconds": CAP_FRAMES * 0.08} if cap else {})}
        audio = client.audio.speech.create(
            model="tts", voice="alloy", input=text, response_format="wav", extra_body=extra, timeout=300
        )
        assert audio.content == through_the_cli[case], case


def test_python_gives_the_same_wav(through_the_cli, tiny_csm_dir, tmp_path):
    service = SpeechService(load_model(tiny_csm_dir, torch.device("cpu"), torch.float32, capability="speaks_text"))
    for case, (text, cap) in CASES.items():
        result = service.speak(SpeechRequest(text, seed=SEED, max_steps=CAP_FRAMES if cap else None))
        assert result.chunks == (1 if case == "short" else len(service.plan(SpeechRequest(text)).chunks))
        path = write_audio(tmp_path / f"{case}.wav", result.audio, result.sample_rate)
        assert path.read_bytes() == through_the_cli[case], case
