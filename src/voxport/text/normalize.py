"""Written text to spoken text, before tokenization: numbers, dates, times, money, percentages, phone numbers,
units, abbreviations, URLs and e-mail addresses read out in English or Chinese, each replaced stretch keeping its
place in the original text (see spoken.py).

Libraries: num2words (English number words: cardinals, ordinals, years) and cn2an (Chinese numerals), both pure
Python and small (~160 KB and ~230 KB with its one dependency). The grammar-based normalizers (NeMo
text-processing, WeTextProcessing) read more cases but need pynini (a 166 MB native wheel, grammars compiled at
first use) and give back a whole rewritten string, not where each replacement came from, which word timings in
the user's own words need. So the spans are found here with a short table of patterns, and the libraries say
the numbers.

Each pattern's match is read in the language of the nearest letter around it (script.py), so "2026年" and
"in 2026" are read differently within one text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType

from voxport.text import chinese, english
from voxport.text.script import Language, language_at
from voxport.text.spoken import Spoken, SpokenBuilder, compose

READERS: dict[Language, ModuleType] = {"en": english, "zh": chinese}
SPELLED_WORDS = {"http", "https", "www", "ftp"}  # said letter by letter inside addresses
INTERPRETATIONS = ("characters", "cardinal", "ordinal", "date", "time", "telephone")  # SSML say-as

# full-width digits and number signs (１２．５％) read as their ASCII twins
_FOLD = str.maketrans(
    {chr(0xFF10 + digit): str(digit) for digit in range(10)} | {"％": "%", "．": ".", "＋": "+", "－": "-", "／": "/"}
)
Part = tuple[int, int, str]  # [start, end) of the text and what is said in its place


@dataclass(frozen=True)
class Rule:
    """A kind of written thing: where it is, and how it is read (None: not this kind after all, e.g. month 13)."""

    name: str
    pattern: re.Pattern[str]
    read: Callable[[re.Match[str], ModuleType], list[Part] | None]


@dataclass(frozen=True)
class Forced:
    """A stretch of the text read one given way (SSML say-as), whatever the rules would do."""

    start: int
    end: int
    interpret_as: str
    format: str = ""


_NUM = r"[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+"  # 1,234,567 or 1234567
_START = r"(?<![A-Za-z0-9_.,])"  # a number starts here, not inside a word or after a decimal point
_END = r"(?![0-9]|[.,][0-9])"  # and ends here
_MONTHS = {name.lower(): index + 1 for index, name in enumerate(english.MONTHS)}
_MONTHS.update({name[:3].lower(): index + 1 for index, name in enumerate(english.MONTHS)} | {"sept": 9})
_UNITS = "|".join(re.escape(name) for name in sorted(english.UNITS, key=len, reverse=True))
_SCALES = "|".join(sorted(english.SCALES, key=len, reverse=True))
_ABBREVIATIONS = "|".join(english.ABBREVIATIONS)
_TIME = re.compile(
    r"(?<![A-Za-z0-9_.,:])(?P<hour>[0-9]{1,2})(?:[:：](?P<minute>[0-9]{2})(?:[:：](?P<second>[0-9]{2}))?"
    r"|(?=\s?[AaPp]\.?[Mm]))(?![0-9:：])(?:\s?(?P<meridiem>[AaPp])\.?[Mm]\.?(?![A-Za-z]))?"
)  # 10:30, 7 pm


def _whole(match: re.Match[str], spoken: str) -> list[Part]:
    return [(match.start(), match.end(), spoken)]


def _group(match: re.Match[str], group: int | str, spoken: str) -> Part:
    return match.start(group), match.end(group), spoken


def _date_parts(year: str | None, month: str | None, day: str | None) -> tuple[int | None, int, int | None] | None:
    month_number, day_number = int(month or 0), int(day or 0)
    if not 1 <= month_number <= 12 or (day is not None and not 1 <= day_number <= 31):
        return None
    return (int(year) if year else None), month_number, (day_number if day else None)


def _read_numeric_date(match: re.Match[str], reader: ModuleType) -> list[Part] | None:
    parts = match.groupdict()
    found = _date_parts(parts["year"], parts["month"], parts["day"])
    return None if found is None else _whole(match, reader.date(*found))


def _read_month_date(match: re.Match[str], reader: ModuleType) -> list[Part] | None:
    if reader is not english:
        return None
    month = _MONTHS[match["month"].lower().rstrip(".")]
    if not 1 <= int(match["day"]) <= 31:
        return None
    parts = [] if match["month"] == english.MONTHS[month - 1] else [_group(match, "month", english.MONTHS[month - 1])]
    parts.append(_group(match, "dayall", english.date(None, None, int(match["day"]))))
    if match["year"]:
        parts.append(_group(match, "year", english.year(match["year"])))
    return parts


def _read_time(match: re.Match[str], reader: ModuleType) -> list[Part] | None:
    hour, minute, second = int(match["hour"]), int(match["minute"] or 0), match["second"]
    if hour > 24 or minute > 59 or (second and int(second) > 59) or (match["meridiem"] and not 1 <= hour <= 12):
        return None
    return _whole(match, reader.time(hour, minute, int(second) if second else None, match["meridiem"] or ""))


def _read_telephone(match: re.Match[str], reader: ModuleType) -> list[Part]:
    plus = match.group(0).startswith("+")
    groups = re.findall(r"[0-9]+", match.group(0))
    if len(groups) == 1 and len(groups[0]) == 11:  # a Chinese mobile number, said 3-4-4
        groups = [groups[0][:3], groups[0][3:7], groups[0][7:]]
    return _whole(match, reader.telephone(groups, plus))


def _read_currency(match: re.Match[str], reader: ModuleType) -> list[Part]:
    return _whole(match, reader.currency(match["symbol"], match["whole"], match["cents"] or "", match["scale"] or ""))


def _read_unit(match: re.Match[str], reader: ModuleType) -> list[Part]:
    value = match["value"].replace(",", "")
    gap = " " if reader is english and match.end("value") == match.start("unit") else ""  # 25°C: twenty-five degrees
    return [
        _group(match, "value", reader.quantity(value)),
        _group(match, "unit", gap + reader.unit_name(value, match["unit"])),
    ]


def _read_range(match: re.Match[str], reader: ModuleType) -> list[Part]:
    return [
        _group(match, "low", reader.cardinal(match["low"])),
        _group(match, "dash", reader.RANGE),
        _group(match, "high", reader.cardinal(match["high"])),
    ]


def _read_year(match: re.Match[str], reader: ModuleType) -> list[Part] | None:
    if reader is not english:
        return None
    return [_group(match, "year", english.year(match["year"]))]


def _read_chinese_year(match: re.Match[str], reader: ModuleType) -> list[Part] | None:
    return None if reader is not chinese else _whole(match, chinese.year(match.group(0)))


def _read_abbreviation(match: re.Match[str], reader: ModuleType) -> list[Part] | None:
    if reader is not english:
        return None
    name = match["abbreviation"]
    key = name.replace(".", "\\.")
    if name == "etc":  # the period stays: "etc." mostly ends a sentence
        return [_group(match, "abbreviation", english.ABBREVIATIONS[key])]
    return _whole(match, english.ABBREVIATIONS[key])


def _read_number(match: re.Match[str], reader: ModuleType) -> list[Part]:
    text = match.group(0)
    if reader is chinese and text == "2" and match.string[match.end() : match.end() + 1] in chinese.MEASURE_WORDS:
        return _whole(match, "两")
    gap = " " if reader is english and match.string[match.end() : match.end() + 1].isalpha() else ""  # 5G: five G
    return _whole(match, reader.number(text) + gap)


RULES: tuple[Rule, ...] = (  # on a tie (two matches starting at one place) the earlier rule wins
    Rule(
        "url",
        re.compile(r"(?:https?://|www\.)[^\s<>\"'，。]*[^\s<>\"'.,;:!?)\]，。；：！？）]"),
        lambda match, reader: _whole(match, address(match.group(0), reader)),
    ),
    Rule(
        "email",
        re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
        lambda match, reader: _whole(match, address(match.group(0), reader)),
    ),
    Rule(
        "date",
        re.compile(
            r"(?<![A-Za-z0-9_.,/-])(?P<year>[0-9]{4})(?P<sep>[-/.])(?P<month>[0-9]{1,2})(?P=sep)"
            r"(?P<day>[0-9]{1,2})(?![0-9]|[.,/-][0-9])"
        ),
        _read_numeric_date,
    ),
    Rule(
        "date",
        re.compile(
            r"(?<![A-Za-z0-9_.,/-])(?P<month>[0-9]{1,2})/(?P<day>[0-9]{1,2})/(?P<year>[0-9]{4})"
            r"(?![0-9]|[.,/-][0-9])"
        ),
        _read_numeric_date,
    ),
    Rule(
        "date",
        re.compile(
            rf"(?<![A-Za-z])(?P<month>{'|'.join(english.MONTHS)}|(?:Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept?"
            rf"|Oct|Nov|Dec)\.?)\s+(?P<dayall>(?P<day>[0-9]{{1,2}})(?:st|nd|rd|th)?)(?![0-9A-Za-z])"
            rf"(?:,?\s+(?P<year>[0-9]{{4}})(?![0-9]))?"
        ),
        _read_month_date,
    ),
    Rule("time", _TIME, _read_time),
    Rule(
        "telephone",
        re.compile(
            r"(?<![A-Za-z0-9_.,+-])(?:\+[0-9]{1,3}[\s-]?)?(?:\(?[0-9]{3}\)?[\s.-]?[0-9]{3}[\s.-]"
            r"[0-9]{4}|1[3-9][0-9]{9}|0[0-9]{2,3}-[0-9]{7,8})(?![0-9])"
        ),
        _read_telephone,
    ),
    Rule(
        "currency",
        re.compile(
            rf"(?P<symbol>[$€£¥￥])\s?(?P<whole>{_NUM})(?:\.(?P<cents>[0-9]+))?{_END}"
            rf"(?:\s?(?P<scale>{_SCALES})(?![A-Za-z]))?"
        ),
        _read_currency,
    ),
    Rule(
        "percent",
        re.compile(rf"{_START}(?P<value>(?:{_NUM})(?:\.[0-9]+)?)\s?[%％]"),
        lambda match, reader: _whole(match, reader.percent(match["value"].replace(",", ""))),
    ),
    Rule(
        "ordinal",
        re.compile(rf"{_START}(?P<value>{_NUM})(?:st|nd|rd|th)(?![A-Za-z0-9])"),
        lambda match, reader: _whole(match, english.ordinal(match["value"])) if reader is english else None,
    ),
    Rule(
        "unit",
        re.compile(rf"{_START}(?P<value>(?:{_NUM})(?:\.[0-9]+)?){_END}\s?(?P<unit>{_UNITS})(?![A-Za-z0-9])"),
        _read_unit,
    ),
    Rule(
        "range", re.compile(rf"(?<![A-Za-z0-9_.,-])(?P<low>{_NUM})(?P<dash>[-–~～])(?P<high>{_NUM}){_END}"), _read_range
    ),
    Rule(
        "year",
        re.compile(
            r"(?i:\b(?:in|since|until|by|from|of|year|during|before|after|around|circa))\s+"
            r"(?P<year>1[1-9][0-9]{2}|20[0-9]{2})(?![0-9]|[.,][0-9])"
        ),
        _read_year,
    ),
    Rule("year", re.compile(r"(?<![A-Za-z0-9_.,])(?:[0-9]{4}(?=\s?年)|[0-9]{2}(?=年代))"), _read_chinese_year),
    Rule(
        "number",
        re.compile(
            rf"(?<![A-Za-z0-9_.,-])-?(?:{_NUM})(?:\.[0-9]+)?{_END}"  # -5 only after a space
            rf"|{_START}(?:{_NUM})(?:\.[0-9]+)?{_END}"
        ),
        _read_number,
    ),
    Rule(
        "abbreviation", re.compile(rf"(?<![A-Za-z.])(?P<abbreviation>{_ABBREVIATIONS})\.(?=\s|$)"), _read_abbreviation
    ),
    Rule(
        "abbreviation",
        re.compile(r"(?<![A-Za-z.])No\.(?=\s?[0-9])"),
        lambda match, reader: _whole(match, "number") if reader is english else None,
    ),
    Rule("and", re.compile(r"(?<=\s)&(?=\s)"), lambda match, reader: _whole(match, reader.SYMBOLS["&"])),
)


def normalize(
    written: Spoken | str, default: Language = "en", forced: Sequence[Forced] = (), rules: bool = True
) -> Spoken:
    """`written` as it should be spoken, its pieces pointing at `written`'s source. Stretches in `forced` are
    read as they say; the rest by RULES (or copied as written when `rules` is False)."""
    if isinstance(written, str):
        written = Spoken.verbatim(written)
    text = written.text
    folded = text.translate(_FOLD)  # what the rules read; same length, so offsets are the same
    builder = SpokenBuilder()
    position = 0
    for span in sorted(forced, key=lambda span: span.start):
        _apply_rules(text, folded, position, span.start, default, builder, rules)
        reader = READERS[language_at(folded, span.start, span.end, default)]
        builder.say(
            interpret(folded[span.start : span.end], span.interpret_as, reader, span.format), span.start, span.end
        )
        position = span.end
    _apply_rules(text, folded, position, len(text), default, builder, rules)
    return compose(builder.build(), written)


def _apply_rules(
    text: str, folded: str, start: int, end: int, default: Language, builder: SpokenBuilder, rules: bool
) -> None:
    position = start
    while rules and (found := _next_match(folded, position, end, default)) is not None:
        match, parts = found
        for part_start, part_end, spoken in parts:
            builder.copy(text[position:part_start], position)
            builder.say(spoken, part_start, part_end)
            position = part_end
        builder.copy(text[position : match.end()], position)
        position = match.end()
    builder.copy(text[position:end], position)


def _next_match(text: str, start: int, end: int, default: Language) -> tuple[re.Match[str], list[Part]] | None:
    """The earliest match of any rule that reads it (on a tie, the first rule's), with how it is read."""
    best: tuple[re.Match[str], list[Part]] | None = None
    for rule in RULES:
        for match in rule.pattern.finditer(text, start, end):
            if best is not None and match.start() >= best[0].start():
                break
            if not match.group(0):
                continue
            reader = READERS[language_at(text, match.start(), match.end(), default)]
            parts = rule.read(match, reader)
            if parts is not None:
                best = match, parts
                break
    return best


def address(text: str, reader: ModuleType) -> str:
    """A URL or e-mail address: words as they are ('https' and 'www' spelled), digits and symbols by name."""
    out = []
    for word in re.findall(r"[^\W\d_]+|.", text):
        if word[0].isalpha():
            out.append(" ".join(word) if word.lower() in SPELLED_WORDS else word)
        else:
            out.append(reader.DIGITS[int(word)] if word.isdigit() else reader.SYMBOLS.get(word, word))
    return " ".join(out)


def characters(text: str, reader: ModuleType) -> str:
    """Spelled out: letters one by one, digits and symbols by name."""
    return " ".join(
        reader.DIGITS[int(char)] if char.isdigit() else reader.SYMBOLS.get(char, char)
        for char in text
        if not char.isspace()
    )


_SAY_AS_PATTERNS = {
    "cardinal": re.compile(rf"-?(?:{_NUM})"),
    "ordinal": re.compile(rf"(?P<value>{_NUM})(?:st|nd|rd|th|\.)?"),
    "telephone": re.compile(r"\+?[0-9][0-9 ().-]*[0-9]"),
}
_DATE_FORMATS = {
    "ymd": ("year", "month", "day"),
    "mdy": ("month", "day", "year"),
    "dmy": ("day", "month", "year"),
    "md": ("month", "day"),
    "dm": ("day", "month"),
    "ym": ("year", "month"),
    "my": ("month", "year"),
    "y": ("year",),
    "m": ("month",),
    "d": ("day",),
}


def interpret(text: str, interpret_as: str, reader: ModuleType, format: str = "") -> str:
    """`text` read as SSML's say-as `interpret_as` says; ValueError naming what was expected if it cannot be."""
    text = text.strip()
    if interpret_as == "characters":
        return characters(text, reader)
    if interpret_as == "date":
        return _interpret_date(text, reader, format)
    if interpret_as == "time":
        match = _TIME.fullmatch(text)
        spoken = _read_time(match, reader) if match else None
        if not spoken:
            raise ValueError("a time like 10:30, 9:05:30 or 7 pm")
        return spoken[0][2]
    match = _SAY_AS_PATTERNS[interpret_as].fullmatch(text)
    if match is None:
        raise ValueError(
            {
                "cardinal": "a whole number like 1234 or 1,234",
                "ordinal": "a number like 3 or 3rd",
                "telephone": "digits with + ( ) - . or spaces",
            }[interpret_as]
        )
    if interpret_as == "cardinal":
        return reader.cardinal(text)
    if interpret_as == "ordinal":
        return reader.ordinal(match["value"])
    return _read_telephone(match, reader)[0][2]


def _interpret_date(text: str, reader: ModuleType, format: str) -> str:
    order = _DATE_FORMATS.get(format or "ymd")
    if order is None:
        raise ValueError(f"format one of {', '.join(_DATE_FORMATS)}")
    fields = re.fullmatch(r"[0-9]+(?:[-/.][0-9]+)*", text) and re.split(r"[-/.]", text)
    if format == "" and fields and len(fields) == 3 and len(fields[0]) != 4:
        order = _DATE_FORMATS["mdy"]  # 12/05/2026 without a format: month first, as in the US
    if not fields or len(fields) != len(order):
        raise ValueError(f"a date written {format or 'yyyy-mm-dd'}")
    values = dict(zip(order, fields))
    found = _date_parts(values.get("year"), values.get("month") or "1", values.get("day"))
    if found is None:
        raise ValueError(f"a valid date written {format or 'yyyy-mm-dd'}")
    year, month, day = found
    return reader.date(year, month if "month" in values else None, day)
