"""Which language a stretch of text is in, for reading its numbers: Chinese where the nearest letter is a CJK
character, English where it is a Latin one. Digits, spaces and symbols say nothing, so "2026年" is Chinese and
"in 2026" English; a text with no letters at all is read in `default`."""

from __future__ import annotations

from typing import Literal

Language = Literal["en", "zh"]
LANGUAGES: tuple[Language, ...] = ("en", "zh")

_CJK_RANGES = (
    (0x3000, 0x303F),  # CJK punctuation: 。、「」
    (0x3400, 0x4DBF),  # extension A
    (0x4E00, 0x9FFF),  # unified ideographs
    (0xF900, 0xFAFF),  # compatibility ideographs
    (0xFF01, 0xFF60),  # full-width forms: ，：！（）
    (0x20000, 0x2FA1F),  # extensions B and later
)


def is_cjk(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _CJK_RANGES)


def hint(char: str) -> Language | None:
    """The language a character points to, or None for digits, spaces, symbols and ASCII punctuation."""
    if is_cjk(char):
        return "zh"
    if char.isalpha():
        return "en"
    return None


def language_at(text: str, start: int, end: int, default: Language = "en") -> Language:
    """The language of text[start:end]: that of the nearest letter outside it (the one before on a tie)."""
    before = after = None
    for distance, index in enumerate(range(start - 1, -1, -1)):
        if (before := hint(text[index])) is not None:
            before_distance = distance
            break
    for distance, index in enumerate(range(end, len(text))):
        if (after := hint(text[index])) is not None:
            if before is None or distance < before_distance:
                return after
            break
    if before is not None:
        return before
    inside = [found for char in text[start:end] if (found := hint(char)) is not None]
    return inside[0] if inside else default
