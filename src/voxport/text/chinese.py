"""How Chinese reads numbers, dates, times, money, units and symbols aloud: values as numerals with their units
(一百二十三, 三点一四), years, codes and phone numbers digit by digit (二零二六年, 幺三八...). Number words come
from cn2an; this module only says which characters go around them (点, 分, 百分之, 元)."""

from __future__ import annotations

import cn2an

DIGITS = "零一二三四五六七八九"
PHONE_DIGITS = "零幺二三四五六七八九"  # 1 is 幺 in phone numbers, so it is not heard as 七
RANGE = "到"  # between the two ends of "3-5"
CURRENCIES = {"¥": "元", "￥": "元", "$": "美元", "€": "欧元", "£": "英镑"}
SCALES = {
    "k": "千",
    "K": "千",
    "thousand": "千",
    "M": "百万",
    "million": "百万",
    "B": "十亿",
    "bn": "十亿",
    "billion": "十亿",
    "trillion": "万亿",
}
UNITS = {
    "km": "公里",
    "m": "米",
    "cm": "厘米",
    "mm": "毫米",
    "mi": "英里",
    "ft": "英尺",
    "kg": "公斤",
    "g": "克",
    "mg": "毫克",
    "lb": "磅",
    "lbs": "磅",
    "oz": "盎司",
    "l": "升",
    "L": "升",
    "ml": "毫升",
    "mL": "毫升",
    "km/h": "公里每小时",
    "mph": "英里每小时",
    "ms": "毫秒",
    "Hz": "赫兹",
    "kHz": "千赫兹",
    "MHz": "兆赫兹",
    "GHz": "吉赫兹",
    "KB": "千字节",
    "MB": "兆字节",
    "GB": "吉字节",
    "TB": "太字节",
    "°C": "摄氏度",
    "°F": "华氏度",
    "°": "度",
}
MEASURE_WORDS = "个只位本张件次条台辆种天份双对"  # 2 before these is 两: 两个, 两天
SYMBOLS = {
    ".": "点",
    "@": "艾特",
    "/": "斜杠",
    ":": "冒号",
    "-": "杠",
    "_": "下划线",
    "~": "波浪号",
    "?": "问号",
    "=": "等于",
    "&": "和",
    "#": "井号",
    "%": "百分号",
    "+": "加",
}
MAX_CARDINAL_DIGITS = 12  # longer digit strings (ids, card numbers) are read digit by digit


def cardinal(number: str) -> str:
    """'123' -> '一百二十三', '2000' -> '两千', '-5' -> '负五'; a leading zero or more than
    MAX_CARDINAL_DIGITS digits is read digit by digit."""
    plain = number.replace(",", "")
    body = plain.lstrip("-")
    if (len(body) > 1 and body.startswith("0")) or len(body) > MAX_CARDINAL_DIGITS:
        return ("负" if plain.startswith("-") else "") + digits(body)
    spoken = cn2an.an2cn(plain)
    for big in "千万亿":  # 二千 -> 两千 at the front, as it is said
        for sign in ("", "负"):
            if spoken.startswith(f"{sign}二{big}"):
                spoken = f"{sign}两{spoken[len(sign) + 1 :]}"
    return spoken


def counted(number: str) -> str:
    """A number before a measure word: 2 is 两 (两个), the rest as cardinals."""
    return "两" if number == "2" else cardinal(number)


def decimal(whole: str, fraction: str) -> str:
    return f"{cardinal(whole)}点{digits(fraction)}"


def number(text: str) -> str:
    whole, _, fraction = text.partition(".")
    return decimal(whole, fraction) if fraction else cardinal(whole)


def ordinal(number: str) -> str:
    return f"第{cardinal(number)}"


def year(number: str) -> str:
    return digits(number)


def digits(text: str) -> str:
    return "".join(DIGITS[int(char)] for char in text)


def percent(value: str) -> str:
    return f"百分之{number(value)}"


def currency(symbol: str, whole: str, cents: str, scale: str) -> str:
    """'¥', '3', '50', '' -> '三元五角'; '$', '3', '50', '' -> '三点五零美元'; scale 'M' -> '...百万美元'."""
    name = CURRENCIES[symbol]
    if scale:
        return f"{decimal(whole, cents) if cents else cardinal(whole)}{SCALES[scale]}{name}"
    if name != "元" or not cents or len(cents) > 2:
        return f"{decimal(whole, cents) if cents else cardinal(whole)}{name}"
    jiao, fen = (int(char) for char in cents.ljust(2, "0"))
    text = f"{cardinal(whole)}元" if int(whole.replace(",", "")) or not (jiao or fen) else ""
    if jiao:
        text += f"{DIGITS[jiao]}角"
    if fen:
        text += f"{'零' if text and not jiao else ''}{DIGITS[fen]}分"
    return text


def quantity(value: str) -> str:
    """A number before a unit: 2 is 两 (两公里)."""
    return counted(value) if value == "2" else number(value)


def unit_name(value: str, name: str) -> str:
    return UNITS[name]


def date(year_: int | None, month: int | None, day: int | None) -> str:
    """'二零二六年十二月五日'; any part may be missing."""
    text = f"{year(str(year_))}年" if year_ is not None else ""
    if month:
        text += f"{cardinal(str(month))}月"
    if day:
        text += f"{cardinal(str(day))}日"
    return text


def time(hour: int, minute: int, second: int | None, meridiem: str) -> str:
    """'10:30' -> '十点三十分', '10:05' -> '十点零五分', '2:00' -> '两点', 'pm' -> '下午' before it."""
    text = {"a": "上午", "p": "下午"}.get(meridiem[:1].lower(), "") + f"{counted(str(hour))}点"
    if minute or second:
        text += f"{'零' if minute < 10 else ''}{cardinal(str(minute))}分"
    if second:
        text += f"{cardinal(str(second))}秒"
    return text


def telephone(groups: list[str], plus: bool) -> str:
    """Digit by digit with 幺 for 1, groups apart with a comma."""
    spoken = "，".join("".join(PHONE_DIGITS[int(char)] for char in group) for group in groups)
    return f"加{spoken}" if plus else spoken
