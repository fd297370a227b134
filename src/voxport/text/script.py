"""Which language a stretch of text is in, for reading its numbers: Chinese where the nearest letter is a CJK
character, English where it is a Latin one. Digits, spaces and symbols say nothing, so "2026年" is Chinese and
"in 2026" English; a text with no letters at all is read in `default`."""

from __future__ import annotations

import unicodedata
from typing import Literal

Language = Literal["en", "zh"]
LANGUAGES: tuple[Language, ...] = ("en", "zh")

_IDEOGRAPHS = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2FA1F))  # 汉字 and extensions
_CJK_MARKS = (
    (0x3000, 0x303F),
    (0xFF01, 0xFF0F),
    (0xFF1A, 0xFF20),
    (0xFF3B, 0xFF40),
    (0xFF5B, 0xFF60),
)  # 。、，：！（）
_FULL_WIDTH = ((0xFF01, 0xFF60),)  # full-width forms (１２３ＡＢ，：) are written in Chinese text
_HINT_RANGES = _IDEOGRAPHS + _CJK_MARKS + _FULL_WIDTH


def _regex_class(ranges: tuple[tuple[int, int], ...]) -> str:
    return "".join(f"{chr(low)}-{chr(high)}" for low, high in ranges)


IDEOGRAPH = _regex_class(_IDEOGRAPHS)  # the inside of a regex [...] class: one Chinese character
CJK_MARK = _regex_class(_CJK_MARKS)  # CJK punctuation, not part of a word


def is_cjk(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _HINT_RANGES)


def hint(char: str) -> Language | None:
    """The language a character points to: CJK characters Chinese, Latin letters English, else None (digits,
    spaces, symbols, punctuation)."""
    if is_cjk(char):
        return "zh"
    if char.isalpha() and unicodedata.name(char, "").startswith("LATIN"):
        return "en"
    return None  # other scripts (kana, Hangul, Cyrillic...) are read neither way: they do not decide


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
