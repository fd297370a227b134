"""The text layer through every door, on the tiny CSM: the issue's SSML example spoken by `voxport tts --ssml
--timestamps` with its 0.7 s pause measured in the WAV and its words timed in the input's own words; the same
through the openai SDK (JSON envelope) and the SSE stream; batch rows with SSML and timings; malformed SSML
refused with its position; plain text with "<" read as plain text; streamed pieces joined as the whole."""

import base64
import io
import json

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf
import torch

from voxport.cli import main
from voxport.models.registry import load_model
from voxport.services.speech import SpeechRequest, SpeechService
from voxport.text.align import write_tiny_aligner
from voxport.text.segments import Break

EXAMPLE = '<speak>It costs $3.50.<break time="700ms"/>See you on 2026-12-05 at 10:30.</speak>'
EXAMPLE_WORDS = ["It", "costs", "$3.50", "See", "you", "on", "2026-12-05", "at", "10:30"]
BAD_SSML = "<speak>It <prosody rate='slow'>costs</prosody> $3.50.</speak>"
SEED, FRAMES = 5, 6  # each chunk at most 6 frames (0.48 s): short, and the same cap through every door
FRAME_SECONDS = 0.080


@pytest.fixture(scope="module")
def aligner_dir(tmp_path_factory):
    return write_tiny_aligner(tmp_path_factory.mktemp("aligner") / "tiny-aligner")


@pytest.fixture(scope="module")
def service(tiny_csm_dir, aligner_dir) -> SpeechService:
    model = load_model(tiny_csm_dir, torch.device("cpu"), torch.float32, capability="speaks_text")
    return SpeechService(model, aligner=aligner_dir)


@pytest.fixture(scope="module")
def through_the_cli(tiny_csm_dir, aligner_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli")
    assert (
        main(
            [
                "tts",
                EXAMPLE,
                "--ssml",
                "--timestamps",
                str(out / "words.json"),
                "--aligner",
                str(aligner_dir),
                "--model",
                str(tiny_csm_dir),
                "--device",
                "cpu",
                "--seed",
                str(SEED),
                "--max-tokens",
                str(FRAMES),
                "-o",
                str(out / "example.wav"),
            ]
        )
        == 0
    )
    return (out / "example.wav").read_bytes(), json.loads((out / "words.json").read_text())


@pytest.fixture(scope="module")
def server(tiny_csm_dir, aligner_dir):
    from serving import Server

    running = Server("--model", f"tts={tiny_csm_dir}", "--aligner", str(aligner_dir))
    yield running.base
    running.stop()


def silent_runs(audio: np.ndarray, rate: int, floor: float = 1e-4) -> list[tuple[int, int]]:
    quiet = np.concatenate([[False], np.abs(audio) < floor, [False]])
    edges = np.flatnonzero(np.diff(quiet.astype(np.int8)))
    return [(int(start), int(end)) for start, end in zip(edges[::2], edges[1::2])]


def check_timings(record: dict, duration: float) -> None:
    """One timing per word of the input, each the input's own text at its offsets, in order, inside the audio."""
    words = record["words"]
    assert [word["word"] for word in words] == EXAMPLE_WORDS
    assert all(EXAMPLE[word["source_start"] : word["source_end"]] == word["word"] for word in words)
    assert all(0 <= word["start"] <= word["end"] <= duration + 1e-9 for word in words)
    assert all(a["end"] <= b["start"] + 1e-9 for a, b in zip(words, words[1:]))
    first, second = record["chunks"]
    assert second["start"] - first["end"] == pytest.approx(0.7)
    assert first["text"] == "It costs three dollars and fifty cents."
    assert EXAMPLE[second["source_start"] : second["source_end"]] == "See you on 2026-12-05 at 10:30."
    for word in words:
        assert any(chunk["start"] <= word["start"] <= word["end"] <= chunk["end"] for chunk in record["chunks"])


def test_the_issue_example_through_the_cli(through_the_cli):
    wav, record = through_the_cli
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    check_timings(record, len(audio) / rate)
    first, second = record["chunks"]
    start, end = round(first["end"] * rate), round(second["start"] * rate)
    assert not audio[start:end].any()  # the break is digital silence...
    pauses = [run for run in silent_runs(audio, rate) if run[0] <= start and end <= run[1]]
    assert len(pauses) == 1  # ...heard as one pause of 0.7 s, within one frame
    assert abs((pauses[0][1] - pauses[0][0]) / rate - 0.7) <= FRAME_SECONDS
    assert len(audio) / rate == pytest.approx(second["end"])


def test_the_issue_example_through_the_openai_sdk(through_the_cli, server):
    """`timestamps: true` answers a JSON envelope: the same WAV in base64, and the same timings."""
    wav, record = through_the_cli
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)
    reply = client.audio.speech.create(
        model="tts",
        voice="alloy",
        input=EXAMPLE,
        response_format="wav",
        extra_body={"seed": SEED, "max_seconds": FRAMES * FRAME_SECONDS, "timestamps": True},
        timeout=300,
    )
    envelope = json.loads(reply.content)
    assert base64.b64decode(envelope["audio"]) == wav
    assert envelope["words"] == record["words"] and envelope["chunks"] == record["chunks"]
    assert envelope["text"] == EXAMPLE and envelope["response_format"] == "wav"
    plain = client.audio.speech.create(
        model="tts",
        voice="alloy",
        input=EXAMPLE,
        response_format="wav",
        extra_body={"seed": SEED, "max_seconds": FRAMES * FRAME_SECONDS},
        timeout=300,
    )
    assert plain.content == wav  # without timestamps: the audio file itself


def test_the_sse_stream_carries_the_timings_as_an_event(through_the_cli, server):
    wav, record = through_the_cli
    body = {
        "model": "tts",
        "input": EXAMPLE,
        "seed": SEED,
        "max_seconds": FRAMES * FRAME_SECONDS,
        "stream_format": "sse",
        "response_format": "pcm",
        "timestamps": True,
    }
    reply = httpx.post(f"{server}/v1/audio/speech", json=body, timeout=300)
    events = [json.loads(line[6:]) for line in reply.text.splitlines() if line.startswith("data: ")]
    assert [event["type"] for event in events[-2:]] == ["speech.timestamps", "speech.audio.done"]
    pcm = b"".join(base64.b64decode(event["audio"]) for event in events if event["type"] == "speech.audio.delta")
    check_timings(events[-2], len(pcm) / 2 / 24000)
    assert [word["word"] for word in events[-2]["words"]] == [word["word"] for word in record["words"]]
    assert events[-2]["chunks"] == record["chunks"]  # chunk times are exact, streamed or not


def test_a_raw_audio_stream_refuses_timestamps(server):
    body = {"model": "tts", "input": "Hello.", "stream_format": "audio", "timestamps": True}
    reply = httpx.post(f"{server}/v1/audio/speech", json=body, timeout=60)
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "timestamps"


def test_malformed_ssml_is_refused_with_its_position(server, tiny_csm_dir, tmp_path, capsys):
    expected = "SSML line 1, column 11: unknown tag <prosody>"
    reply = httpx.post(f"{server}/v1/audio/speech", json={"model": "tts", "input": BAD_SSML}, timeout=60)
    assert reply.status_code == 400 and expected in reply.json()["error"]["message"]
    assert main(["tts", BAD_SSML, "--model", str(tiny_csm_dir), "--device", "cpu", "-o", str(tmp_path / "x.wav")]) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors == [f"voxport: error: {expected}: expected one of <speak>, <break>, <say-as>, <sub>, <p>, <s>"]
    assert not list(tmp_path.iterdir())


def test_plain_text_with_a_less_than_sign_stays_plain(service):
    plan = service.plan(SpeechRequest("Use <b>bold</b> here, and <break/> is just words."))
    assert plan.chunks == ("Use <b>bold</b> here, and <break/> is just words.",)
    assert not any(isinstance(segment, Break) for segment in plan.script.segments)
    forced = service.plan(SpeechRequest("Hello <break time='1s'/> there.", ssml=True))
    assert [type(segment).__name__ for segment in forced.script.segments] == ["Speech", "Break", "Speech"]
    as_text = service.plan(SpeechRequest("<speak>Hi</speak>", ssml=False))
    assert as_text.chunks == ("<speak>Hi</speak>",)


def test_normalization_is_on_by_default_and_can_be_switched_off(service):
    assert service.plan(SpeechRequest("It costs $3.50.")).chunks == ("It costs three dollars and fifty cents.",)
    assert service.plan(SpeechRequest("It costs $3.50.", normalize=False)).chunks == ("It costs $3.50.",)
    assert service.plan(SpeechRequest("价格是¥3.50。")).chunks == ("价格是三元五角。",)


def test_long_normalized_text_is_chunked_with_offsets_into_the_input(service):
    text = " ".join(f"On 2026-12-{day:02d} at 10:{day:02d} we paid ${day}.50 for {day} km." for day in range(1, 12))
    plan = service.plan(SpeechRequest(text))
    assert len(plan.chunks) > 1 and all(len(chunk) <= service.defaults.max_chunk_chars for chunk in plan.chunks)
    spans = [segment.spoken.source_span(0, len(segment.text)) for segment in plan.script.speech]
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:]))  # in order, each its own stretch of the input
    assert "$1.50" in text[slice(*spans[0])] and "three" not in text


def test_streamed_pieces_with_breaks_join_as_the_whole(service):
    plan = service.plan(SpeechRequest(EXAMPLE, seed=SEED, max_steps=FRAMES))
    whole = service.speak_plans([plan])[0]
    pieces = list(service.pieces(plan, streamed=False))
    assert np.array_equal(np.concatenate([piece.spoken.audio for piece in pieces]), whole.audio)
    streamed = list(service.pieces(plan, streamed=True))
    joined = np.concatenate([piece.spoken.audio for piece in streamed])
    assert len(joined) == len(whole.audio) and np.abs(joined - whole.audio).max() < 1e-5
    assert service.times(plan, streamed)[0] == whole.chunk_times


def test_a_text_of_breaks_only_is_refused(service):
    with pytest.raises(Exception, match="no words to speak"):
        service.plan(SpeechRequest('<speak><break time="1s"/></speak>'))


def test_batch_rows_take_ssml_and_write_timings(tiny_csm_dir, aligner_dir, tmp_path):
    from voxport.batch.workers import SpeechWorker

    worker = SpeechWorker(str(tiny_csm_dir), "cpu", "float32", str(tmp_path), {"aligner": str(aligner_dir)}, 1)
    rows = [
        {"id": "timed", "text": EXAMPLE, "seed": SEED, "max_tokens": FRAMES, "timestamps": True},
        {"id": "plain", "text": "It costs $3.50.", "seed": SEED, "max_tokens": FRAMES, "normalize": False},
        {"id": "bad", "text": BAD_SSML, "seed": SEED},
    ]
    records = {record["id"]: record for record in worker.run(rows)}
    assert records["timed"]["timestamps"] == "timed.json" and records["plain"]["timestamps"] is None
    assert "column 11: unknown tag <prosody>" in records["bad"]["error"]
    audio, rate = sf.read(tmp_path / "timed.wav", dtype="float32")
    check_timings(json.loads((tmp_path / "timed.json").read_text()), len(audio) / rate)
    assert not (tmp_path / "plain.json").exists()


def test_batch_rows_read_true_and_false_columns(tmp_path):
    from voxport.batch.rows import read_rows

    path = tmp_path / "rows.csv"
    path.write_text("id,text,ssml,normalize,timestamps\na,Hi,true,0,1\nb,Hi,maybe,,\n")
    first, second = read_rows(path, "text")
    assert first.fields == {"text": "Hi", "ssml": True, "normalize": False, "timestamps": True}
    assert second.problem == "ssml is 'maybe': expected true or false"
