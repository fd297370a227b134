"""Long texts: split without losing a word, spoken chunk by chunk with the chunks before as context;
speed changes that keep the pitch."""

import json
import re

import numpy as np
import pytest
import soundfile as sf

from voxport.audio.speed import change_speed
from voxport.models.base import SpeechSpec, SpokenAudio, VoiceSample
from voxport.models.longform import CONTEXT_CHUNKS, chunk_seconds, speak_long, split_text


def words(text):
    return re.sub(r"\s+", " ", text).strip()


@pytest.mark.parametrize("text", [
    "One. Two! Three? Four.",
    "A sentence, with clauses; that runs on: and on — and on, " * 12,
    "word " * 200,
    "x" * 450 + " tail.",
    "「引号」里面。还有中文句子！最后一句？",
])
def test_split_keeps_every_word_in_order_within_the_limit(text):
    chunks = split_text(text, max_chars=60)
    assert all(0 < len(chunk) <= 60 for chunk in chunks)
    assert words(" ".join(chunks)).replace(" ", "") == words(text).replace(" ", "")


def test_split_prefers_sentence_then_clause_boundaries():
    text = "The first sentence is here. The second one follows it, and then it goes on for quite a while longer."
    assert split_text(text, max_chars=60) == [
        "The first sentence is here.", "The second one follows it,",
        "and then it goes on for quite a while longer."]
    assert split_text("Short. Sentences. Merge.", max_chars=60) == ["Short. Sentences. Merge."]


class RecordingModel:
    """Speaks one 100-sample piece per character of its text, in two pieces; records what it was asked."""

    speaks_text = True
    sample_rate = 1000

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
    text = " ".join(f"Sentence number {index} is here." for index in range(4))
    pieces = list(speak_long(model, SpeechSpec(text, context=(voice,)), max_chars=30))
    assert [spec.text for spec in model.specs] == split_text(text, 30) and len(model.specs) == 4
    assert [piece.chunk for piece in pieces] == [0, 0, 1, 1, 2, 2, 3, 3]  # streamed: two pieces a chunk
    for index, spec in enumerate(model.specs):
        earlier = model.specs[max(0, index - CONTEXT_CHUNKS):index]
        assert [sample.text for sample in spec.context] == [voice.text] + [chunk.text for chunk in earlier]
        for sample, chunk_index in zip(spec.context[1:], range(max(0, index - CONTEXT_CHUNKS), index)):
            assert np.all(sample.audio == chunk_index + 1) and len(sample.audio) == len(model.specs[chunk_index].text)


def test_chunk_budget_grows_with_the_text_and_respects_a_cap():
    assert chunk_seconds("a" * 100, None) > chunk_seconds("a" * 10, None) > 1.0
    assert chunk_seconds("a" * 100, 0.5) == 0.5
    spec = SpeechSpec("Hello there.", max_seconds=99)
    list(speak_long(model := RecordingModel(), spec, cap_seconds=0.32, stream=False))
    assert model.specs[0].max_seconds == 0.32


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
    code = main(["tts", "--input-file", str(text), "--model", str(tiny_csm_dir), "-o", str(output),
                 "--max-tokens", "2", "--seed", "1", "--device", "cpu", "--json"])
    report = json.loads(capsys.readouterr().out)
    chunks = len(split_text(text.read_text()))
    assert code == 0 and chunks == report["chunks"] == 3 and report["frames"] == 2 * chunks
    assert 0 < report["time_to_first_audio_seconds"] < report["generation_seconds"]
    samples, rate = sf.read(output)
    assert rate == 24000 and len(samples) == 2 * chunks * 1920
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]  # no temporary left behind


def test_cli_refuses_what_a_long_text_cannot_take(tiny_csm_dir, tmp_path, capsys):
    from voxport.cli import main

    lines = tmp_path / "lines.txt"
    lines.write_text("Short line.\n" + "A sentence in a very long line. " * 10 + "\n", encoding="utf-8")
    assert main(["tts", "--batch-file", str(lines), "--model", str(tiny_csm_dir)]) == 1
    assert "--batch-file line 2 is longer than one chunk" in capsys.readouterr().err
    assert main(["tts", "hi", "--engine", "transformers", "--compile", "--model", str(tiny_csm_dir)]) == 1
    assert "does not stream, batch, compile" in capsys.readouterr().err
