"""How English reads numbers, dates, times, money, units and symbols aloud. Number words come from num2words;
this module only says which words go around them ("dollars", "o'clock", "point")."""

from __future__ import annotations

from num2words import num2words

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
MAX_CARDINAL_DIGITS = 15  # longer digit strings (card numbers, ids) are read digit by digit
MAX_GROUPED_DIGITS = 27  # and so is anything past num2words' largest names, even with grouping commas
RANGE = " to "  # between the two ends of "3-5"
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
# symbol: (one, many, hundredth, hundredths); None where the currency has no hundredths
CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "¥": ("yen", "yen", None, None),
    "￥": ("yen", "yen", None, None),
}
SCALES = {
    "k": "thousand",
    "K": "thousand",
    "thousand": "thousand",
    "M": "million",
    "million": "million",
    "B": "billion",
    "bn": "billion",
    "billion": "billion",
    "trillion": "trillion",
}
# unit: (one, many)
UNITS = {
    "km": ("kilometer", "kilometers"),
    "m": ("meter", "meters"),
    "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"),
    "mi": ("mile", "miles"),
    "ft": ("foot", "feet"),
    "kg": ("kilogram", "kilograms"),
    "g": ("gram", "grams"),
    "mg": ("milligram", "milligrams"),
    "lb": ("pound", "pounds"),
    "lbs": ("pound", "pounds"),
    "oz": ("ounce", "ounces"),
    "l": ("liter", "liters"),
    "L": ("liter", "liters"),
    "ml": ("milliliter", "milliliters"),
    "mL": ("milliliter", "milliliters"),
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "mph": ("mile per hour", "miles per hour"),
    "ms": ("millisecond", "milliseconds"),
    "Hz": ("hertz", "hertz"),
    "kHz": ("kilohertz", "kilohertz"),
    "MHz": ("megahertz", "megahertz"),
    "GHz": ("gigahertz", "gigahertz"),
    "KB": ("kilobyte", "kilobytes"),
    "MB": ("megabyte", "megabytes"),
    "GB": ("gigabyte", "gigabytes"),
    "TB": ("terabyte", "terabytes"),
    "°C": ("degree Celsius", "degrees Celsius"),
    "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "°": ("degree", "degrees"),
}
# written form (a regex alternative, without the final period): spoken form
ABBREVIATIONS = {
    "Dr": "Doctor",
    "Mr": "Mister",
    "Mrs": "Missus",
    "Ms": "Miz",
    "Prof": "Professor",
    "Jr": "Junior",
    "Sr": "Senior",
    "vs": "versus",
    "approx": "approximately",
    "e\\.g": "for example",
    "i\\.e": "that is",
    "etc": "et cetera",
}
SYMBOLS = {
    ".": "dot",
    "@": "at",
    "/": "slash",
    ":": "colon",
    "-": "dash",
    "_": "underscore",
    "~": "tilde",
    "?": "question mark",
    "=": "equals",
    "&": "and",
    "#": "hash",
    "%": "percent",
    "+": "plus",
}


def cardinal(number: str) -> str:
    """'1,234' -> 'one thousand, two hundred and thirty-four'; '-5' -> 'minus five'; more than
    MAX_CARDINAL_DIGITS digits without grouping commas (a card or an id) digit by digit."""
    plain = number.replace(",", "")
    body = plain.lstrip("-")
    if ("," not in number and len(body) > MAX_CARDINAL_DIGITS) or len(body) > MAX_GROUPED_DIGITS:
        return ("minus " if plain.startswith("-") else "") + digits(body)
    return num2words(int(plain))


def decimal(whole: str, fraction: str) -> str:
    """'3', '14' -> 'three point one four' (every digit after the point, trailing zeros too)."""
    return f"{cardinal(whole)} point {digits(fraction)}"


def number(text: str) -> str:
    """A cardinal or a decimal, whichever `text` is."""
    whole, _, fraction = text.partition(".")
    return decimal(whole, fraction) if fraction else cardinal(whole)


def ordinal(number: str) -> str:
    return num2words(int(number.replace(",", "")), to="ordinal")


def year(number: str) -> str:
    """'2026' -> 'twenty twenty-six', '1905' -> 'nineteen oh-five'."""
    return num2words(int(number), to="year")


def digits(text: str) -> str:
    return " ".join(DIGITS[int(char)] for char in text)


def percent(value: str) -> str:
    return f"{number(value)} percent"


def currency(symbol: str, whole: str, cents: str, scale: str) -> str:
    """'$', '3', '50', '' -> 'three dollars and fifty cents'; '$', '1.5' with scale 'M' -> '... million dollars'."""
    one, many, hundredth, hundredths = CURRENCIES[symbol]
    amount = int(whole.replace(",", ""))
    if scale:
        value = decimal(whole, cents) if cents else cardinal(whole)
        return f"{value} {SCALES[scale]} {many}"
    if cents and (hundredth is None or len(cents) > 2):
        return f"{decimal(whole, cents)} {many}"
    cent_count = int(cents.ljust(2, "0")) if cents else 0
    parts = []
    if amount or not cent_count:
        parts.append(f"{cardinal(whole)} {one if amount == 1 else many}")
    if cent_count:
        parts.append(f"{cardinal(str(cent_count))} {hundredth if cent_count == 1 else hundredths}")
    return " and ".join(parts)


def quantity(value: str) -> str:
    """A number before a unit."""
    return number(value)


def unit_name(value: str, name: str) -> str:
    one, many = UNITS[name]
    return one if value == "1" else many


def date(year_: int | None, month: int | None, day: int | None) -> str:
    """'December fifth, twenty twenty-six'; any part may be missing."""
    words = [MONTHS[month - 1]] if month else []
    if day:
        words.append(num2words(day, to="ordinal"))
    text = " ".join(words)
    if year_ is not None:
        text = f"{text}, {year(str(year_))}" if text else year(str(year_))
    return text


def time(hour: int, minute: int, second: int | None, meridiem: str) -> str:
    """'10:30' -> 'ten thirty', '10:05' -> 'ten oh five', '10:00' -> 'ten o'clock', with 'a m' / 'p m'."""
    if minute == 0 and not second:
        text = cardinal(str(hour)) if meridiem else f"{cardinal(str(hour))} o'clock"
    else:
        text = f"{cardinal(str(hour))} {'oh ' if minute < 10 else ''}{cardinal(str(minute))}"
        if second:
            text += f" and {cardinal(str(second))} {'second' if second == 1 else 'seconds'}"
    if meridiem:
        text += f" {meridiem[0].lower()} m"
    return text


def telephone(groups: list[str], plus: bool) -> str:
    """Each group of digits read digit by digit, groups apart: 'five five five, one two three, ...'."""
    spoken = ", ".join(digits(group) for group in groups)
    return f"plus {spoken}" if plus else spoken
