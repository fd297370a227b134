"""The toy families' models: a few linear layers that pick one code per step from a seeded generator; each
code stands for 0.1 s of a tone at 16 kHz (speech) or a letter (chat replies)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from voxport.audio.io import check_samples, load_audio
from voxport.models.base import ChatRound, ChatSettings, SpeechDefaults, SpokenAudio, Stage
from voxport.models.sampling import SamplingSettings, pick_tokens

RATE = 16000
STEP_SAMPLES = 1600  # 0.1 s a step
CODES = 27  # 0 ends; 1..26 are letters (chat) or tones (speech)
WIDTH = 16


class ToyNet(nn.Module):
    """state = mean(embedded text or audio) + embedded previous code, through residual layers, to code logits."""

    def __init__(self, layers: int = 2):
        super().__init__()
        self.inputs = nn.Embedding(256, WIDTH)
        self.codes = nn.Embedding(CODES, WIDTH)
        self.layers = nn.ModuleList([nn.Linear(WIDTH, WIDTH) for _ in range(layers)])
        self.head = nn.Linear(WIDTH, CODES)

    def forward(self, inputs: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """Logits [steps, CODES] for input ids [n] and each step's previous code [steps]."""
        state = self.inputs(inputs).mean(0, keepdim=True) + self.codes(previous)
        for layer in self.layers:
            state = state + torch.tanh(layer(state))
        return self.head(state)


@dataclass(frozen=True)
class ToyExample:
    inputs: torch.Tensor  # input ids
    codes: torch.Tensor  # the steps' codes, teacher-forced


class ToyModel:
    """What both toys share: loading their one safetensors file, generation, and the hooks a port needs."""

    step_unit = "frame"

    def __init__(self, net: ToyNet, device: torch.device, dtype: torch.dtype, load_seconds: float):
        self.net, self.device, self.dtype = net, device, dtype
        self.load_seconds, self.load_timings = load_seconds, {"weights": load_seconds}

    @classmethod
    def load(cls, source, device, dtype):
        start = time.perf_counter()
        path = Path(source)
        config = json.loads((path / "config.json").read_text())
        net = ToyNet(config["layers"])
        net.load_state_dict(load_file(path / "model.safetensors"))
        return cls(net.to(device, dtype).eval(), device, dtype, time.perf_counter() - start)

    def compile(self) -> None:
        pass

    @torch.inference_mode()
    def codes_for(
        self, inputs: torch.Tensor, max_steps: int, min_steps: int, sampling: SamplingSettings, seed: int
    ) -> list[int]:
        generator = torch.Generator(device=self.device).manual_seed(seed)
        codes: list[int] = []
        previous = 0
        for step in range(max_steps):
            logits = self.net(inputs.to(self.device), torch.tensor([previous], device=self.device)).float()
            if step < min_steps:
                logits[:, 0] = float("-inf")
            previous = int(pick_tokens(logits, sampling, generator)[0])
            if previous == 0:
                break
            codes.append(previous)
        return codes

    # The hooks accuracy, repro and bench use.

    def example_inputs(self) -> ToyExample:
        return self.bench_inputs("short")

    def bench_inputs(self, size: str) -> ToyExample:
        text = {"short": "Hi.", "medium": "A medium line.", "long": "A long line of text to read."}[size]
        return ToyExample(_ids(text), torch.arange(1, 9) % CODES)

    def accuracy_examples(self, texts=None, audios=None) -> dict[str, ToyExample]:
        return {
            f"text{index}": ToyExample(_ids(text), torch.arange(1, 9) % CODES)
            for index, text in enumerate(texts or ["Every port is checked."])
        }

    def accuracy_stages(self, example: ToyExample) -> list[Stage]:
        inputs = {
            "inputs": example.inputs,
            "previous": torch.cat([torch.zeros(1, dtype=torch.long), example.codes[:-1]]),
        }
        return [
            Stage(
                "net",
                inputs,
                lambda model, given: model.net(given["inputs"], given["previous"]),
                ("layers.0", "layers.1", "head"),
            )
        ]

    def checkpoint_name(self, module: str) -> str:
        return module

    @torch.no_grad()
    def forward_logits(self, inputs: ToyExample) -> dict[str, torch.Tensor]:
        previous = torch.cat([torch.zeros(1, dtype=torch.long), inputs.codes[:-1]]).to(self.device)
        return {"logits": self.net(inputs.inputs.to(self.device), previous).float()}

    def token_logits(self, inputs: ToyExample, tokens: torch.Tensor) -> torch.Tensor:
        return self.forward_logits(ToyExample(inputs.inputs, tokens))["logits"]

    def greedy_tokens(self, inputs: ToyExample, steps: int) -> torch.Tensor:
        return self.sampled_tokens(inputs, steps, None)

    def sampled_tokens(self, inputs: ToyExample, steps: int, seed: int | None) -> torch.Tensor:
        sampling = SamplingSettings(greedy=seed is None)
        return torch.tensor(self.codes_for(inputs.inputs, steps, steps, sampling, seed or 0))

    def tokens_to_audio(self, tokens: torch.Tensor) -> np.ndarray:
        return _tones(tokens.tolist())

    def run_fixed(self, inputs: ToyExample, steps: int) -> float:
        return len(self.codes_for(inputs.inputs, steps, steps, SamplingSettings(), 0)) * STEP_SAMPLES / RATE

    def weight_bytes_per_step(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.net.parameters())

    def weight_bytes_per_prompt(self) -> int:
        return self.weight_bytes_per_step()

    def named_modules(self):
        return self.net.named_modules()


class ToySpeech(ToyModel):
    """Text in, a tone per step out, at 16 kHz; each voice sample heard shifts the state."""

    family = "toyspeech"
    speaks_text = True
    speech_defaults = SpeechDefaults(
        sampling=SamplingSettings(temperature=1.2, top_k=8), base_seconds=0.5, seconds_per_char=0.05, max_chunk_chars=60
    )
    sample_rate = RATE
    step_rate = RATE / STEP_SAMPLES

    def speak(self, specs, on_step=None):
        results = []
        for spec in specs:
            start = time.perf_counter()
            codes = self.codes_for(self._inputs(spec), spec.max_steps, spec.min_steps, spec.sampling, spec.seed)
            results.append(
                SpokenAudio(
                    _tones(codes), RATE, len(codes), time.perf_counter() - start, np.array(codes, dtype=np.int64)
                )
            )
            if on_step is not None:
                on_step(len(codes))
        return results

    def speak_stream(self, spec):
        whole = self.speak([spec])[0]
        for start in range(0, max(whole.output_tokens, 1), 2):
            codes = whole.codes[start : start + 2]
            yield SpokenAudio(_tones(codes.tolist()), RATE, len(codes), 0.0, codes)

    def count_text_tokens(self, text: str) -> int:
        return len(text.encode())

    def _inputs(self, spec) -> torch.Tensor:
        heard = "".join(f"{sample.text}{len(sample.audio)}" for sample in spec.context)
        return _ids(f"{spec.speaker}:{heard}:{spec.text}")


@dataclass
class ToyClip:
    samples: np.ndarray  # 16 kHz

    @property
    def ids(self) -> torch.Tensor:
        """The clip as input ids: its loudness in 50 ms windows, 0..255."""
        windows = self.samples[: len(self.samples) // 800 * 800].reshape(-1, 800)
        return torch.from_numpy(np.minimum(np.abs(windows).mean(1) * 2550, 255).astype(np.int64))


@dataclass
class ToyConversation:
    model: ToyChat
    settings: ChatSettings
    seed: int
    rounds: list[ChatRound] = field(default_factory=list)
    heard: list[torch.Tensor] = field(default_factory=list)

    def remember(self, clip: ToyClip, reply) -> ChatRound:
        ids = list(reply) if not isinstance(reply, str) else [ord(c) - 96 for c in reply if "a" <= c <= "z"]
        return self._round(clip, ids, 0.0, None)

    def say(self, clip: ToyClip, on_token=None) -> ChatRound:
        start = time.perf_counter()
        chosen = self.settings.with_defaults(ToyChat.chat_defaults)
        sampling = SamplingSettings(
            temperature=chosen.temperature, top_k=chosen.top_k, top_p=chosen.top_p, greedy=chosen.greedy
        )
        inputs = torch.cat([*self.heard, clip.ids])
        ids = self.model.codes_for(inputs, chosen.max_new_tokens, 0, sampling, self.seed + len(self.rounds))
        if on_token is not None:
            for count in range(1, len(ids) + 1):
                on_token(ids[:count])
        return self._round(clip, ids, time.perf_counter() - start, _tones(ids) if chosen.speaks and ids else None)

    def _round(self, clip: ToyClip, ids: list[int], seconds: float, speech) -> ChatRound:
        self.heard += [clip.ids, torch.tensor(ids, dtype=torch.long)]
        self.rounds.append(
            ChatRound(
                index=len(self.rounds),
                text=self.model.reply_text(ids),
                text_token_ids=ids,
                audio_codes=ids if speech is not None else [],
                reply_ids=ids,
                audio_features=len(clip.ids),
                generation_seconds=seconds,
                prefill_positions=0,
                cache_positions_before=0,
                stopped=True,
                speech=speech,
            )
        )
        return self.rounds[-1]


class ToyChat(ToyModel):
    """A clip in, a reply of letters out (and, in a2ta, a tone per letter at 16 kHz)."""

    family = "toychat"
    answers_audio = True
    chat_defaults = ChatSettings(max_new_tokens=12, temperature=0.8, top_p=1.0, top_k=10)
    input_rate = RATE
    speech_rate = RATE

    def chat(self, settings: ChatSettings) -> ToyConversation:
        return ToyConversation(self, settings, 0 if settings.seed is None else settings.seed)

    def prepare_clip(self, audio) -> ToyClip:
        if isinstance(audio, np.ndarray):
            return ToyClip(check_samples(audio, RATE, "clip"))
        return ToyClip(load_audio(audio, RATE))

    def reply_text(self, ids) -> str:
        return "".join(chr(96 + i) for i in ids if 0 < i < CODES)

    def load_speech_decoder(self, prompt_dir=None) -> None:
        pass


def make_toy_speech(directory: Path, seed: int = 0, **options) -> Path:
    return _write(directory, "toy_speech", seed)


def make_toy_chat(directory: Path, seed: int = 0, **options) -> Path:
    return _write(directory, "toy_chat", seed)


def _write(directory: Path, model_type: str, seed: int) -> Path:
    torch.manual_seed(seed)
    net = ToyNet()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps({"model_type": model_type, "layers": 2}))
    save_file({name: tensor.contiguous() for name, tensor in net.state_dict().items()}, directory / "model.safetensors")
    return directory


def _ids(text: str) -> torch.Tensor:
    return torch.tensor(list(text.encode()), dtype=torch.long)


def _tones(codes) -> np.ndarray:
    t = np.arange(STEP_SAMPLES) / RATE
    pieces = [0.3 * np.sin(2 * np.pi * (200 + 20 * code) * t) for code in codes]
    return np.concatenate(pieces).astype(np.float32) if pieces else np.zeros(0, np.float32)
