"""The SSML subset voxport reads: <speak>, <break time|strength>, <say-as interpret-as format>, <sub alias>,
<p>, <s>. The markup is parsed by the standard library's expat, whose byte positions give every piece of text its
place in the input; anything outside the subset (another tag, another attribute, a DOCTYPE, malformed XML) is
refused with its line and column."""

from __future__ import annotations

import bisect
import itertools
import re
from dataclasses import dataclass, field
from xml.parsers import expat

from voxport.errors import InputError
from voxport.text import english
from voxport.text.normalize import INTERPRETATIONS, Forced, interpret
from voxport.text.script import Language
from voxport.text.segments import Break
from voxport.text.spoken import Spoken, SpokenBuilder

MAX_BREAK_SECONDS = 10.0  # the longest pause one break (or a run of breaks) makes
BREAK_STRENGTHS = {"none": 0.0, "x-weak": 0.25, "weak": 0.5, "medium": 0.75, "strong": 1.0, "x-strong": 1.25}
ATTRIBUTES = {  # tag: the attributes it may have
    "speak": {"version", "xmlns", "xml:lang", "xmlns:xsi", "xsi:schemaLocation"},
    "break": {"time", "strength"},
    "say-as": {"interpret-as", "format"},
    "sub": {"alias"},
    "p": set(),
    "s": set(),
}
_TIME = re.compile(r"(?P<value>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?P<unit>ms|s)")
_SPEAK_START = re.compile(r"\s*<(?:\?xml|speak[\s>/])")
_WRAP = ("<speak>", "</speak>")


@dataclass
class Written:
    """One stretch of SSML between breaks: its text with offsets into the input, and its say-as stretches."""

    spoken: Spoken
    forced: list[Forced] = field(default_factory=list)


def is_ssml(text: str) -> bool:
    """Whether `text` is an SSML document: it starts with <speak> or an XML declaration."""
    return _SPEAK_START.match(text) is not None


def parse_ssml(text: str) -> tuple[list[Written | Break], Language | None]:
    """The input's speech and breaks in order, and the language its xml:lang names (None if it names none).
    Text without a <speak> root is read as if wrapped in one."""
    wrapped = not is_ssml(text)
    return _Parser(text, wrapped).run()


class _Parser:
    def __init__(self, source: str, wrapped: bool) -> None:
        self.source = source
        self.shift = len(_WRAP[0]) if wrapped else 0
        self.document = f"{_WRAP[0]}{source}{_WRAP[1]}" if wrapped else source
        self.byte_ends = list(itertools.accumulate(len(char.encode()) for char in self.document))
        self.parser = expat.ParserCreate("utf-8")
        self.items: list[Written | Break] = []
        self.builder = SpokenBuilder()
        self.forced: list[Forced] = []
        self.length = 0  # of the text built for the current stretch
        self.open: list[tuple[str, dict[str, str], int]] = []  # tag, attributes, where its content starts
        self.pending: tuple[str, int] | None = None  # text whose end is where the next event starts
        self.sub_start: int | None = None  # where the text of the open <sub> starts
        self.gap: int | None = None  # where a sentence or paragraph ended: a space before any more text
        self.language: Language | None = None
        self.parser.StartElementHandler = self._start
        self.parser.EndElementHandler = self._end
        self.parser.CharacterDataHandler = self._text
        self.parser.StartDoctypeDeclHandler = lambda *args: self._fail("a DOCTYPE is not allowed in SSML")
        self.parser.ProcessingInstructionHandler = lambda target, data: self._fail(
            f"processing instruction <?{target}?> is not allowed in SSML"
        )
        self.parser.CommentHandler = lambda data: self._flush_text()

    def run(self) -> tuple[list[Written | Break], Language | None]:
        try:
            self.parser.Parse(self.document.encode(), True)
        except expat.ExpatError as error:
            line_start = sum(len(line) for line in self.document.encode().splitlines(keepends=True)[: error.lineno - 1])
            raise InputError(
                f"SSML {self._where(self._char(line_start + error.offset))}: {expat.ErrorString(error.code)}"
            ) from None
        self._close_stretch()
        return self.items, self.language

    # where things are
    def _char(self, byte: int) -> int:
        """The document's character offset at UTF-8 byte offset `byte`."""
        return bisect.bisect_right(self.byte_ends, byte)

    def _here(self) -> int:
        return self._char(self.parser.CurrentByteIndex)

    def _where(self, char: int) -> str:
        offset = min(max(char - self.shift, 0), len(self.source))
        line = self.source.count("\n", 0, offset) + 1
        column = offset - (self.source.rfind("\n", 0, offset) + 1) + 1
        return f"line {line}, column {column}"

    def _fail(self, message: str, at: int | None = None) -> None:
        raise InputError(f"SSML {self._where(self._here() if at is None else at)}: {message}")

    # events
    def _flush_text(self) -> None:
        """The text seen last ends where the current event starts: add it, copied where it is as written."""
        if self.pending is None:
            return
        data, start = self.pending
        self.pending = None
        end = self._here()
        inside = self.open[-1][0] if self.open else ""
        if inside == "sub":
            return  # said by its alias, added at </sub>
        self._add(data, start, end, verbatim=self.document[start:end] == data)

    def _text(self, data: str) -> None:
        self._flush_text()
        self.pending = (data, self._here())
        if self.open and self.open[-1][0] == "sub" and self.sub_start is None:
            self.sub_start = self._here()

    def _start(self, tag: str, attributes: dict[str, str]) -> None:
        self._flush_text()
        at = self._here()
        if tag not in ATTRIBUTES:
            self._fail(f"unknown tag <{tag}>: expected one of {', '.join(f'<{name}>' for name in ATTRIBUTES)}", at)
        for name in attributes:
            if name not in ATTRIBUTES[tag]:
                allowed = ", ".join(sorted(ATTRIBUTES[tag])) or "none"
                self._fail(f"unknown attribute {name!r} on <{tag}>: expected {allowed}", at)
        parent = self.open[-1][0] if self.open else None
        if (tag == "speak") != (parent is None):
            self._fail(f"<{tag}> {'must be the root' if tag == 'speak' else 'outside <speak>'}", at)
        if parent in ("say-as", "sub", "break"):
            self._fail(f"<{tag}> inside <{parent}>: expected only text there", at)
        if tag == "speak" and "xml:lang" in attributes:
            self.language = "zh" if attributes["xml:lang"].lower().startswith(("zh", "cmn", "yue")) else "en"
        elif tag == "break":
            self._break(attributes, at)
        elif tag == "say-as":
            kind = attributes.get("interpret-as")
            if kind not in INTERPRETATIONS:
                self._fail(f"<say-as interpret-as={kind!r}>: expected one of {', '.join(INTERPRETATIONS)}", at)
            if "format" in attributes and kind != "date":
                self._fail(f'<say-as> format is for interpret-as="date" only, not {kind!r}', at)
        elif tag == "sub" and "alias" not in attributes:
            self._fail('<sub> needs an alias attribute: <sub alias="what to say">', at)
        elif tag in ("p", "s"):
            self._separate(at)
        self.open.append((tag, attributes, self.length if tag == "say-as" else at))

    def _end(self, tag: str) -> None:
        self._flush_text()
        _, attributes, start = self.open.pop()
        if tag == "say-as":
            kind, text = attributes["interpret-as"], self.builder.build().text[start : self.length]
            try:
                interpret(text, kind, english, attributes.get("format", ""))
            except ValueError as error:
                self._fail(f'<say-as interpret-as="{kind}"> cannot read {text.strip()!r}: expected {error}')
            end = self.length - (len(text) - len(text.rstrip()))  # spaces around the content stay spaces
            start += len(text) - len(text.lstrip())
            self.forced.append(Forced(start, max(start, end), kind, attributes.get("format", "")))
        elif tag == "sub":
            end = self._here()
            start = end if self.sub_start is None else self.sub_start
            self._add(attributes["alias"], start, end, verbatim=False)
            self.sub_start = None
        elif tag in ("p", "s"):
            self._separate(self._here())

    def _add(self, text: str, start: int, end: int, verbatim: bool) -> None:
        """`text`, read from the document's [start, end): copied if it is as written there (not an entity like
        &amp;, nor a line break the parser normalized, nor an alias)."""
        if self.gap is not None and self.length and not text[:1].isspace():
            self.builder.say(" ", self.gap - self.shift, self.gap - self.shift)
            self.length += 1
        self.gap = None
        if verbatim:
            self.builder.copy(text, start - self.shift)
        else:
            self.builder.say(text, start - self.shift, end - self.shift)
        self.length += len(text)

    def _separate(self, at: int) -> None:
        """Sentences and paragraphs do not run into each other: a space before the next text if it has none."""
        if self.gap is None and self.length and not self.builder.build().text[-1].isspace():
            self.gap = at

    def _break(self, attributes: dict[str, str], at: int) -> None:
        if "time" in attributes:  # time wins over strength, as in the SSML specification
            match = _TIME.fullmatch(attributes["time"].strip())
            if match is None:
                self._fail(f"<break time={attributes['time']!r}>: expected a duration like 500ms or 1.5s", at)
            seconds = float(match["value"]) / (1000 if match["unit"] == "ms" else 1)
        else:
            strength = attributes.get("strength", "medium")
            if strength not in BREAK_STRENGTHS:
                self._fail(f"<break strength={strength!r}>: expected one of {', '.join(BREAK_STRENGTHS)}", at)
            seconds = BREAK_STRENGTHS[strength]
        self._close_stretch()
        if self.items and isinstance(self.items[-1], Break):
            seconds += self.items[-1].seconds
            self.items.pop()
        self.items.append(Break(min(seconds, MAX_BREAK_SECONDS)))

    def _close_stretch(self) -> None:
        spoken = self.builder.build()
        if spoken.text.strip():
            self.items.append(Written(spoken, self.forced))
        self.builder, self.forced, self.length, self.gap = SpokenBuilder(), [], 0, None
