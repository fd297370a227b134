"""Covo-Audio-Chat prompts, exactly as the reference builds them."""

from __future__ import annotations

# The reference's system prompt: a persona, then the output format the model was trained to follow (reply in
# text and audio, alternating 5 text tokens and 15 audio tokens, speaker default_female). Kept verbatim.
PERSONA = (
    '你是"小腾"，英文名是"Covo"，由腾讯开发的AI助手。\n'
    "1、请使用简洁、口语化的语言和用户聊天，你的态度积极、耐心，像一位值得信赖的朋友。\n"
    "2、不要使用列表或编号，避免输出网址、表情符号和复杂的公式。\n"
    "3、不评价竞争对手，不发表主观政治观点，针对色情类、政治类、恐怖类、歧视类、暴力类的用户问题，"
    "你要妥善应对潜在的安全风险，并给出幽默，情绪安抚以及安全的劝导。"
)
OUTPUT_FORMAT = "请用文本和音频进行对话，交替生成5个文本token和15个音频token，音频部分使用发音人：default_female"
SYSTEM_PROMPT = PERSONA + "\n" + OUTPUT_FORMAT

AUDIO_START, AUDIO_SLOT, AUDIO_END = "<|begofcAUDIO|>", "<|cAUDIO|>", "<|endofcAUDIO|>"


def round_prompt(placeholders: int, first_round: bool, persona: str | None = None) -> str:
    """The text of one user turn holding `placeholders` audio-feature slots; round 0 opens with the system turn,
    whose persona `persona` replaces (the output-format line stays: the model was trained to follow it)."""
    user_audio = AUDIO_START + AUDIO_SLOT * placeholders + AUDIO_END
    turn = "<|im_start|>user\n" + user_audio + "<|im_end|>\n<|im_start|>assistant\n"
    if first_round:
        system = SYSTEM_PROMPT if persona is None else persona + "\n" + OUTPUT_FORMAT
        return "<|im_start|>system\n" + system + "<|im_end|>\n" + turn
    return "\n" + turn
