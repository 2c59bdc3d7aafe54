"""Change-freeze windows: five-field cron schedules matched minute by minute in a time zone.

A window is active at a moment when that moment's wall-clock minute in the window's time zone
matches the schedule, so `* 16-23 * * 5` in Europe/Berlin is Friday 16:00-23:59 Berlin time,
summer or winter. Fields, as in Vixie cron: minute, hour, day of month, month (1-12 or jan-dec),
day of week (0-7, 0 and 7 are Sunday, or sun-sat); each a list of `*`, `n`, `a-b`, with `/step`.
When both day fields are restricted a day matches either one (cron's rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

_MONTHS = {m: i + 1 for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}
_DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS), ("day of week", 0, 7, _DAYS))


class CronError(ValueError):
    """A schedule that is not five valid cron fields."""


@dataclass(frozen=True)
class Cron:
    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool

    def matches(self, when: datetime) -> bool:
        """Does the wall-clock minute of `when` (in its own time zone) match?"""
        if when.minute not in self.minutes or when.hour not in self.hours:
            return False
        if when.month not in self.months:
            return False
        day = when.day in self.days
        weekday = when.isoweekday() % 7 in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return day or weekday
        return day and weekday


def parse_cron(text: str) -> Cron:
    fields = text.split()
    if len(fields) != 5:
        raise CronError(f"a schedule has 5 fields (minute hour day-of-month month day-of-week), "
                        f"{text!r} has {len(fields)}")
    sets = [_parse_field(value, *spec) for value, spec in zip(fields, _FIELDS, strict=True)]
    weekdays = frozenset(0 if d == 7 else d for d in sets[4])
    return Cron(text=" ".join(fields), minutes=sets[0], hours=sets[1], days=sets[2], months=sets[3],
                weekdays=weekdays, days_restricted=not fields[2].startswith("*"),
                weekdays_restricted=not fields[4].startswith("*"))


def _parse_field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{name}: step {step_text!r} in {part!r} is not a positive number")
            step = int(step_text)
        if body == "*":
            start, end = low, high
        elif "-" in body:
            first, _, last = body.partition("-")
            start, end = _value(first, name, low, high, names), _value(last, name, low, high, names)
            if start > end:
                raise CronError(f"{name}: range {body!r} runs backwards; split it in two "
                                f"(e.g. 22-23,0-5)")
        else:
            start = _value(body, name, low, high, names)
            end = high if step_text else start
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _value(text: str, name: str, low: int, high: int, names: dict[str, int]) -> int:
    key = text.lower()
    if key in names:
        return names[key]
    if not text.isdigit():
        raise CronError(f"{name}: {text!r} is not a number" + (
            f" or one of {', '.join(names)}" if names else ""))
    value = int(text)
    if not low <= value <= high:
        raise CronError(f"{name}: {value} is outside {low}-{high}")
    return value


def check_timezone(name: str) -> str:
    """The time zone name if the system knows it (raises CronError otherwise)."""
    try:
        ZoneInfo(name)
    except Exception:  # ZoneInfoNotFoundError, ValueError for odd keys, IsADirectoryError, …
        raise CronError(f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin") from None
    return name


@dataclass(frozen=True)
class FreezeWindow:
    schedule: Cron
    timezone: str = "UTC"
    reason: str = ""
    environments: tuple[str, ...] = ()  # empty: every protected environment

    def local(self, now: datetime) -> datetime:
        aware = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
        return aware.astimezone(ZoneInfo(self.timezone))

    def active(self, now: datetime) -> bool:
        return self.schedule.matches(self.local(now))

    def applies_to(self, environment: str, protected: bool) -> bool:
        return environment in self.environments if self.environments else protected

    def describe(self) -> dict[str, object]:
        return {"cron": self.schedule.text, "timezone": self.timezone, "reason": self.reason,
                "environments": list(self.environments)}
