"""A conversation's history restored from what the server keeps (the reply's ids) is the conversation the
model had: the cache, and so the next reply, are the same as if the rounds had run in one go."""

import json

import numpy as np

from voxport.models.base import ChatSettings
from voxport.models.covo.frontend import prepare_clip
from voxport.models.covo.prompt import PERSONA, SYSTEM_PROMPT


def voice_like(seconds: float, pitch: float) -> np.ndarray:
    t = np.arange(int(seconds * 24000)) / 24000
    return (0.3 * np.sin(2 * np.pi * pitch * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def test_replaying_reply_ids_restores_the_conversation(tiny_covo):
    settings = ChatSettings(max_new_tokens=12, greedy=True)
    first, second = voice_like(1.0, 220), voice_like(0.8, 330)
    live = tiny_covo.chat(settings)
    said = live.say(first)
    answer = live.say(second)
    assert said.audio_codes and len(said.reply_ids) == len(said.text_token_ids) + len(said.audio_codes) - 1

    restored = tiny_covo.chat(settings)
    restored.remember(first, said.reply_ids)
    assert restored.engine.positions == answer.cache_positions_before  # the same history length
    again = restored.say(second)
    assert again.text_token_ids == answer.text_token_ids and again.audio_codes == answer.audio_codes

    from_text = tiny_covo.chat(settings)
    from_text.remember(first, said.text)
    assert from_text.engine.positions != answer.cache_positions_before  # text alone loses the speech codes


def test_a_persona_replaces_the_reference_persona_only(tiny_covo):
    settings = ChatSettings(max_new_tokens=4, greedy=True, persona="You are a terse pirate.")
    conversation = tiny_covo.chat(settings)
    text = tiny_covo.tokenizer.decode(conversation.prompt_ids(prepare_clip(voice_like(0.5, 200)), 0)[0])
    assert text.startswith("<|im_start|>system\nYou are a terse pirate.\n请用文本和音频进行对话")
    assert SYSTEM_PROMPT.splitlines()[0] not in text


def test_chat_cli_takes_a_system_prompt(tiny_covo_dir, speech_wav, capsys):
    from voxport.cli import main

    positions = []
    for extra in ([], ["--system", "Be brief."]):
        assert (
            main(
                [
                    "chat",
                    "--model",
                    str(tiny_covo_dir),
                    "--audio",
                    str(speech_wav),
                    "--max-new-tokens",
                    "2",
                    "--json",
                    "--device",
                    "cpu",
                    *extra,
                ]
            )
            == 0
        )
        positions.append(json.loads(capsys.readouterr().out)["rounds"][0]["prefill_positions"])
    persona = len(tiny_covo_tokens(tiny_covo_dir, PERSONA)) - len(tiny_covo_tokens(tiny_covo_dir, "Be brief."))
    assert positions[0] - positions[1] == persona  # the persona was replaced by the given text


def tiny_covo_tokens(directory, text):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(directory)(text, add_special_tokens=False).input_ids
