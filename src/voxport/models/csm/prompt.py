"""CSM prompts: the checkpoint's chat template renders the turns; each context audio becomes codec frames."""

from __future__ import annotations

from voxport.errors import InputError
from voxport.models.csm.synthesis import SynthesisRequest


def render_prompt(processor, request: SynthesisRequest, frames_per_context: list[int]) -> str:
    """Prompt text with one audio token per codec frame of each context turn, in turn order."""
    conversation = [_message(turn.speaker, turn.text, with_audio=True) for turn in request.context] + [
        _message(request.speaker, request.text, with_audio=False)
    ]
    rendered = processor.apply_chat_template(conversation, tokenize=False)
    rendered = rendered if isinstance(rendered, str) else rendered[0]
    audio_token = processor.audio_token
    pieces = rendered.split(audio_token)
    if len(pieces) != len(frames_per_context) + 1:
        raise InputError(f"text contains the model's audio token {audio_token}: expected plain text")
    expanded = [pieces[0]]
    for frames, piece in zip(frames_per_context, pieces[1:]):
        expanded += [audio_token * frames, piece]
    return "".join(expanded)


def _message(speaker: int, text: str, with_audio: bool) -> dict:
    content = [{"type": "text", "text": text}] + ([{"type": "audio"}] if with_audio else [])
    return {"role": str(speaker), "content": content}
