"""One input to a plan of what to speak: SSML or plain text, normalized or not."""

from __future__ import annotations

from voxport.text.normalize import normalize as normalize_text
from voxport.text.script import Language
from voxport.text.segments import Break, Speech, TextPlan
from voxport.text.ssml import is_ssml, parse_ssml


def plan_text(text: str, ssml: bool | None = None, normalize: bool = True, language: Language = "en") -> TextPlan:
    """The plan for `text`: read as SSML when `ssml` is True, or when it is None and the text starts with
    <speak>; otherwise plain text, where '<' is just a character. `normalize` reads numbers, dates, ... aloud
    (say-as is read either way). `language` reads numbers in a text with no letters at all."""
    if ssml is None:
        ssml = is_ssml(text)
    if not ssml:
        segments = [Speech(normalize_text(text, language, rules=normalize))] if text.strip() else []
        return TextPlan(text, tuple(segments))
    items, declared = parse_ssml(text)
    segments = [
        item
        if isinstance(item, Break)
        else Speech(normalize_text(item.spoken, declared or language, item.forced, rules=normalize))
        for item in items
    ]
    return TextPlan(text, tuple(segments))
