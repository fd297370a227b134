"""Long texts: split without losing a word, spoken chunk by chunk (by the speech service) with the chunks
before as context; speed changes that keep the pitch."""

import json
import re

import numpy as np
import pytest
import soundfile as sf

from voxport.audio.speed import change_speed
from voxport.errors import InputError
from voxport.models.base import SpeechDefaults, SpokenAudio, VoiceSample
from voxport.models.sampling import SamplingSettings
from voxport.services.longform import split_text
from voxport.services.speech import SpeechRequest, SpeechService

DEFAULTS = SpeechDefaults(sampling=SamplingSettings(temperature=0.9, top_k=50), max_chunk_chars=30)


def words(text):
    return re.sub(r"\s+", " ", text).strip()


@pytest.mark.parametrize(
    "text",
    [
        "One. Two! Three? Four.",
        "A sentence, with clauses; that runs on: and on — and on, " * 12,
        "word " * 200,
        "x" * 450 + " tail.",
        "「引号」里面。还有中文句子！最后一句？",
    ],
)
def test_split_keeps_every_word_in_order_within_the_limit(text):
    chunks = split_text(text, max_chars=60)
    assert all(0 < len(chunk) <= 60 for chunk in chunks)
    assert words(" ".join(chunks)).replace(" ", "") == words(text).replace(" ", "")


def test_split_prefers_sentence_then_clause_boundaries():
    text = "The first sentence is here. The second one follows it, and then it goes on for quite a while longer."
    assert split_text(text, max_chars=60) == [
        "The first sentence is here.",
        "The second one follows it,",
        "and then it goes on for quite a while longer.",
    ]
    assert split_text("Short. Sentences. Merge.", max_chars=60) == ["Short. Sentences. Merge."]


@pytest.mark.parametrize("quote", ["'", '"', "”", "’", ")", '")'])
def test_closing_quotes_stay_with_their_sentence(quote):
    """A quote or bracket closing a sentence is part of it: no character is lost, and the plan finds each chunk."""
    text = f"He said yes.{quote} Then he left. She said no, clearly.{quote} Bye."
    chunks = split_text(text, max_chars=30)
    assert " ".join(chunks) == text and all(chunk.split()[0][0] not in "'\"”’)" for chunk in chunks)
    plan = SpeechService(RecordingModel()).plan(SpeechRequest(text, normalize=False))
    assert list(plan.chunks) == chunks


class RecordingModel:
    """Speaks one sample per character of its text, in two pieces; records what it was asked."""

    speaks_text = True
    speech_defaults = DEFAULTS
    sample_rate = 1000
    step_rate = 12.5

    def __init__(self):
        self.specs = []

    def speak_stream(self, spec):
        self.specs.append(spec)
        audio = np.full(len(spec.text), len(self.specs), dtype=np.float32)
        yield SpokenAudio(audio[:1], self.sample_rate, 1)
        yield SpokenAudio(audio[1:], self.sample_rate, 1)

    def speak(self, specs, on_step=None):
        return [SpokenAudio(np.concatenate([p.audio for p in self.speak_stream(spec)]), 1000, 2) for spec in specs]


def test_each_chunk_hears_the_voice_and_the_chunks_before():
    model, voice = RecordingModel(), VoiceSample(np.zeros(5, np.float32), "The voice sample.")
    service = SpeechService(model)
    text = " ".join(f"Sentence number {index} is here." for index in range(4))
    pieces = list(service.pieces(service.plan(SpeechRequest(text, voice=(voice,), normalize=False))))
    assert [spec.text for spec in model.specs] == split_text(text, 30) and len(model.specs) == 4
    chunks = [piece.chunk for piece in pieces]
    assert chunks == sorted(chunks) and set(chunks) == {0, 1, 2, 3}  # streamed: each chunk's pieces in order
    for index, spec in enumerate(model.specs):
        earlier = model.specs[max(0, index - DEFAULTS.context_chunks) : index]
        assert [sample.text for sample in spec.context] == [voice.text] + [chunk.text for chunk in earlier]
        for sample, chunk_index in zip(spec.context[1:], range(max(0, index - DEFAULTS.context_chunks), index)):
            assert np.all(sample.audio == chunk_index + 1) and len(sample.audio) == len(model.specs[chunk_index].text)


def test_chunk_budget_grows_with_the_text_and_a_cap_replaces_it():
    service = SpeechService(RecordingModel())
    short, long = (service.plan(SpeechRequest(text)).max_steps[0] for text in ("a" * 10, "a" * 29))
    assert long > short >= 12.5 * DEFAULTS.base_seconds  # steps at 12.5 a second
    assert service.plan(SpeechRequest("Hello there.", max_seconds=0.32)).max_steps == (4,)
    assert service.plan(SpeechRequest("Hello there.", max_steps=99, max_seconds=0.32)).max_steps == (4,)
    with pytest.raises(InputError, match="min steps is 200"):
        service.plan(SpeechRequest("Hello there.", max_steps=99, min_steps=200))


@pytest.mark.parametrize("speed", [0.25, 0.5, 2.0, 4.0])
def test_speed_changes_duration_and_keeps_pitch(speed):
    rate = 24000
    tone = np.sin(2 * np.pi * 440 * np.arange(rate) / rate).astype(np.float32)
    changed = change_speed(tone, speed)
    spectrum = np.abs(np.fft.rfft(changed * np.hanning(len(changed))))
    assert changed.dtype == np.float32 and abs(len(changed) - rate / speed) <= 1
    assert abs(np.argmax(spectrum) * rate / len(changed) - 440) < 5  # resampling would give 440 * speed


def test_cli_speaks_a_long_input_file_whole(tiny_csm_dir, tmp_path, capsys):
    from voxport.cli import main

    text = tmp_path / "chapter.txt"
    text.write_text("This is one sentence of a long text that keeps on going. " * 8, encoding="utf-8")
    output = tmp_path / "chapter.wav"
    code = main(
        [
            "tts",
            "--input-file",
            str(text),
            "--model",
            str(tiny_csm_dir),
            "-o",
            str(output),
            "--max-tokens",
            "2",
            "--seed",
            "1",
            "--device",
            "cpu",
            "--json",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    chunks = len(split_text(text.read_text(), 200))
    assert code == 0 and chunks == report["chunks"] == 3 and report["frames"] == 2 * chunks
    assert 0 < report["time_to_first_audio_seconds"] < report["generation_seconds"]
    samples, rate = sf.read(output)
    assert rate == 24000 and len(samples) == 2 * chunks * 1920
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]  # no temporary left behind


def test_cli_refuses_what_the_reference_engine_cannot_do(tiny_csm_dir, capsys):
    from voxport.cli import main

    assert main(["tts", "hi", "--engine", "transformers", "--compile", "--model", str(tiny_csm_dir)]) == 1
    assert "does not stream, batch, compile" in capsys.readouterr().err
    assert (
        main(
            [
                "tts",
                "A sentence in a very long text. " * 10,
                "--engine",
                "transformers",
                "--model",
                str(tiny_csm_dir),
                "--device",
                "cpu",
            ]
        )
        == 1
    )
    assert "the reference engine speaks one chunk of text" in capsys.readouterr().err
