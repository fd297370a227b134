"""Word timings: when each word of the user's text is heard in speech made from it.

A CTC forced aligner: a wav2vec2 CTC model (transformers' Wav2Vec2ForCTC) gives each 20 ms frame a distribution
over characters, and a Viterbi pass finds the best path through the spoken text's characters. The default model
is MMS-300M trained for forced alignment (the weights of torchaudio's MMS_FA bundle, in transformers' layout on
the hub), which reads romanized text of any language: Chinese is romanized with pypinyin. torchaudio's own
forced_align is not used: the wheel on PyPI is built against CUDA torch and does not load with the CPU one, and
the ctc-forced-aligner package on PyPI builds a C++ extension and pulls onnxruntime; the Viterbi pass is a few
lines of numpy. Tests run the same loading code on tiny random weights written by `write_tiny_aligner`.

Timings come back in the ORIGINAL text's words (what the user wrote, "$3.50", not "three dollars..."), through
the offsets the normalizer and the SSML parser keep.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from voxport.audio.io import resample
from voxport.audio.join import Joined
from voxport.runtime.checkpoints import resolve_checkpoint
from voxport.text.script import CJK_MARK, IDEOGRAPH, is_cjk
from voxport.text.segments import Speech, TextPlan
from voxport.text.spoken import Spoken

ALIGNER_MODEL = "MahmoudAshraf/mms-300m-1130-forced-aligner"  # MMS-300M forced-alignment weights, transformers layout
ALIGNER_FILES = ["*.json", "*.safetensors", "*.bin", "*.txt"]
MMS_LETTERS = "aienoutsrmkldghybpwcvjzf'qx"  # the MMS_FA characters, most frequent first
_WORD = re.compile(rf"[{IDEOGRAPH}]|[^\s{CJK_MARK}{IDEOGRAPH}]+")  # each Chinese character, or a run between spaces
_EDGE_PUNCTUATION = ".,;:!?\"'()[]{}«»“”‘’—–-…"


@dataclass(frozen=True)
class WordTime:
    """A word of the original text (source[source_start:source_end]) and when it is heard, in seconds."""

    word: str
    source_start: int
    source_end: int
    start: float
    end: float


@dataclass(frozen=True)
class ChunkTime:
    """A piece of speech in the plan and when it is heard: exact, from the lengths of the audio before it."""

    text: str
    source_start: int
    source_end: int
    start: float
    end: float


def source_words(spoken: Spoken, source: str) -> list[tuple[int, int]]:
    """The words of `source` that `spoken` says, as spans: whitespace-separated, edge punctuation trimmed, each
    CJK character a word of its own; text outside every piece (SSML tags) is not a word."""
    words: list[tuple[int, int]] = []
    for start, end in _covered(spoken):
        for match in _WORD.finditer(source, start, end):
            word = match.group(0)
            lead = len(word) - len(word.lstrip(_EDGE_PUNCTUATION))
            trimmed = word.strip(_EDGE_PUNCTUATION)
            if trimmed:
                words.append((match.start() + lead, match.start() + lead + len(trimmed)))
    return words


def _covered(spoken: Spoken) -> list[tuple[int, int]]:
    """The source spans the pieces say, merged where they touch."""
    spans: list[list[int]] = []
    for piece in spoken.pieces:
        if piece.source_start == piece.source_end:
            continue
        if spans and spans[-1][1] == piece.source_start:
            spans[-1][1] = piece.source_end
        else:
            spans.append([piece.source_start, piece.source_end])
    return [(start, end) for start, end in spans]


def romanize(word: str) -> str:
    """What the aligner reads for a spoken word: lower-case Latin letters, Chinese as toneless pinyin."""
    if any(is_cjk(char) for char in word):
        from pypinyin import Style, lazy_pinyin  # imported here: only Chinese words need it

        word = "".join(lazy_pinyin(word, style=Style.NORMAL))
    return word.lower()


def ctc_align(log_probs: np.ndarray, targets: list[int], blank: int) -> list[tuple[int, int]] | None:
    """The frames [first, last] of each target token on the most likely CTC path through `log_probs`
    (frames x vocabulary), or None when there are too few frames for the tokens."""
    frames, count = len(log_probs), len(targets)
    states = [blank]
    for token in targets:
        states += [token, blank]
    size = len(states)
    if count == 0 or frames < count + sum(a == b for a, b in zip(targets, targets[1:])):
        return None
    emit = log_probs[:, states]  # frames x states
    score = np.full(size, -np.inf)
    score[:2] = emit[0, :2]
    skip = np.zeros(size, dtype=bool)  # a token state may be reached from the token before, past the blank
    skip[3::2] = [a != b for a, b in zip(targets, targets[1:])]
    back = np.zeros((frames, size), dtype=np.int8)  # how far back the best predecessor state is: 0, 1 or 2
    for frame in range(1, frames):
        options = np.stack(
            [score, np.r_[-np.inf, score[:-1]], np.where(skip, np.r_[-np.inf, -np.inf, score[:-2]], -np.inf)]
        )
        back[frame] = options.argmax(0)
        score = options.max(0) + emit[frame]
    state = size - 1 if score[-1] >= score[-2] else size - 2
    spans: list[list[int]] = [[-1, -1] for _ in targets]
    for frame in range(frames - 1, -1, -1):
        if state % 2:
            token = state // 2
            spans[token][0] = frame
            if spans[token][1] < 0:
                spans[token][1] = frame
        state -= int(back[frame, state])
    return [(first, last) for first, last in spans]


class Aligner:
    """A CTC model that times the words of spoken text in audio."""

    def __init__(
        self, model: torch.nn.Module, vocabulary: dict[str, int], blank: int, sample_rate: int, normalize: bool
    ) -> None:
        self.model, self.vocabulary, self.blank = model.eval(), vocabulary, blank
        self.sample_rate, self.normalize = sample_rate, normalize

    @classmethod
    def load(cls, source: str | Path = ALIGNER_MODEL, device: torch.device | None = None) -> Aligner:
        """The aligner in `source`: a local directory or a hub id, through the same code for real and tiny weights."""
        from transformers import Wav2Vec2ForCTC  # imported here: only timings need it

        path = resolve_checkpoint(source, ALIGNER_FILES)
        vocabulary = json.loads((path / "vocab.json").read_text())
        features_file = path / "preprocessor_config.json"
        features = json.loads(features_file.read_text()) if features_file.is_file() else {}
        model = Wav2Vec2ForCTC.from_pretrained(path).to(device or torch.device("cpu"))
        blank = vocabulary.get("<blank>", model.config.pad_token_id)  # as ctc-forced-aligner finds it
        # without a preprocessor config: 16 kHz, waveform normalized, as torchaudio's MMS_FA bundle feeds it
        return cls(model, vocabulary, blank, features.get("sampling_rate", 16000), features.get("do_normalize", True))

    @torch.inference_mode()
    def log_probs(self, audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, float]:
        """Per-frame log probabilities over the vocabulary, and the seconds one frame lasts."""
        samples = resample(audio.astype(np.float32), sample_rate, self.sample_rate)
        if self.normalize:
            samples = (samples - samples.mean()) / np.sqrt(samples.var() + 1e-7)
        device = next(self.model.parameters()).device
        logits = self.model(torch.from_numpy(samples)[None].to(device)).logits[0]
        log_probs = torch.log_softmax(logits.float(), dim=-1).cpu().numpy()
        return log_probs, len(samples) / self.sample_rate / max(len(log_probs), 1)

    def align(self, audio: np.ndarray, sample_rate: int, spoken: Spoken, source: str) -> list[WordTime]:
        """One timing per word of the original text that `spoken` says, in order, inside the audio, never going
        back in time. A word the model cannot read (no letters it knows) shares its neighbour's boundary."""
        duration = len(audio) / sample_rate
        words = source_words(spoken, source)
        if not words:
            return []
        spoken_words = [match.span() for match in _WORD.finditer(spoken.text)]
        tokens, owners = [], []  # the characters to align, and the spoken word each belongs to
        for index, (start, end) in enumerate(spoken_words):
            for char in romanize(spoken.text[start:end]):
                if char in self.vocabulary and self.vocabulary[char] != self.blank:
                    tokens.append(self.vocabulary[char])
                    owners.append(index)
        spans = None
        if tokens and len(audio):
            log_probs, frame_seconds = self.log_probs(audio, sample_rate)
            spans = ctc_align(log_probs, tokens, self.blank)
        times: dict[int, tuple[float, float]] = {}
        if spans is not None:
            for owner, (first, last) in zip(owners, spans):
                start, end = first * frame_seconds, (last + 1) * frame_seconds
                begun = times.get(owner, (start, end))
                times[owner] = (min(begun[0], start), max(begun[1], end))
        else:  # too little audio for the text: shared out evenly by characters
            total = sum(end - start for start, end in spoken_words) or 1
            position = 0
            for index, (start, end) in enumerate(spoken_words):
                times[index] = (duration * position / total, duration * (position + end - start) / total)
                position += end - start
        return _to_source_words(spoken, source, words, spoken_words, times, duration)


def _to_source_words(
    spoken: Spoken,
    source: str,
    words: list[tuple[int, int]],
    spoken_words: list[tuple[int, int]],
    times: dict[int, tuple[float, float]],
    duration: float,
) -> list[WordTime]:
    """Each original word's time: from the first to the last spoken word that says any of it."""
    found: list[tuple[float, float] | None] = [None] * len(words)
    for index, (start, end) in enumerate(spoken_words):
        if index not in times:
            continue
        source_start, source_end = spoken.source_span(start, end)
        for word_index, (word_start, word_end) in enumerate(words):
            if word_start < source_end and source_start < word_end:
                current = found[word_index]
                low, high = times[index]
                found[word_index] = (low, high) if current is None else (min(current[0], low), max(current[1], high))
    result, previous_end = [], 0.0
    for (start, end), time in zip(words, found):
        low, high = time if time is not None else (previous_end, previous_end)
        low = min(max(low, previous_end if time is None else low, 0.0), duration)
        high = min(max(high, low), duration)
        result.append(WordTime(source[start:end], start, end, low, high))
        previous_end = high
    return result


def chunk_times(plan: TextPlan, joined: Joined) -> list[ChunkTime]:
    """When each piece of speech of `plan` is heard in `joined`, the plan's segments joined in order."""
    chunks = []
    for index, segment in enumerate(plan.segments):
        if isinstance(segment, Speech):
            start, end = joined.seconds(index)
            source_start, source_end = segment.spoken.source_span(0, len(segment.text))
            chunks.append(ChunkTime(segment.text, source_start, source_end, start, end))
    return chunks


def word_times(aligner: Aligner, plan: TextPlan, joined: Joined) -> list[WordTime]:
    """Every word of `plan` timed in `joined` (the plan's segments joined in order): each piece of speech is
    aligned on its own audio, then moved to where that audio starts."""
    words = []
    for index, segment in enumerate(plan.segments):
        if isinstance(segment, Speech):
            start, end = joined.spans[index]
            offset = start / joined.sample_rate
            for word in aligner.align(joined.audio[start:end], joined.sample_rate, segment.spoken, plan.source):
                words.append(
                    WordTime(word.word, word.source_start, word.source_end, word.start + offset, word.end + offset)
                )
    return words


def write_tiny_aligner(directory: Path, seed: int = 0) -> Path:
    """A random Wav2Vec2ForCTC in the real aligner's on-disk layout (config, weights, vocab.json,
    preprocessor_config.json), small enough for tests; `Aligner.load` reads it like the real one."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    vocabulary = {"<blank>": 0, **{char: index + 1 for index, char in enumerate(MMS_LETTERS)}}
    config = Wav2Vec2Config(
        vocab_size=len(vocabulary),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32, 32, 32, 32, 32, 32, 32),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        pad_token_id=0,
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
    )
    torch.manual_seed(seed)
    directory.mkdir(parents=True, exist_ok=True)
    Wav2Vec2ForCTC(config).save_pretrained(directory)
    (directory / "vocab.json").write_text(json.dumps(vocabulary))
    (directory / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "feature_extractor_type": "Wav2Vec2FeatureExtractor",
                "sampling_rate": 16000,
                "do_normalize": True,
                "feature_size": 1,
                "padding_value": 0.0,
                "return_attention_mask": True,
            }
        )
    )
    return directory
