"""Agent attributes (`--attributes="rack:r1;zone:z2;level:3;ports:[1-5]"`).

Values are TEXT, SCALAR, RANGES or SET as in Mesos; a value that parses as a number
is a scalar, `[..]` ranges and `{..}` a set, anything else text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from agora.core.errors import InvalidResource
from agora.core.values import (
    Ranges,
    SetItems,
    format_millis,
    format_ranges,
    format_set,
    make_ranges,
    make_set,
    scalar_to_millis,
)

AttributeValue = str | int | Ranges | SetItems  # text | scalar millis | ranges | set
_NAME = re.compile(r"^[^\s;:]+$")
_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


class InvalidAttribute(InvalidResource):
    pass


class Attributes(Mapping[str, AttributeValue]):
    """An immutable, ordered mapping of attribute name to value."""

    __slots__ = ("_d",)

    def __init__(self, values: Mapping[str, AttributeValue] | None = None) -> None:
        self._d: dict[str, AttributeValue] = dict(values or {})

    def __getitem__(self, name: str) -> AttributeValue:
        return self._d[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __hash__(self) -> int:
        return hash(tuple(self._d.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Attributes):
            return self._d == other._d
        return NotImplemented

    def texts(self) -> dict[str, str]:
        """Every attribute rendered as text (what offer constraints compare against)."""
        return {name: format_attribute_value(value) for name, value in self._d.items()}

    def __repr__(self) -> str:
        return f"Attributes({format_attributes(self)!r})"


def format_attribute_value(value: AttributeValue) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return format_millis(value)
    if isinstance(value, tuple):
        return format_ranges(value)
    return format_set(value)


def parse_attributes(text: str) -> Attributes:
    values: dict[str, AttributeValue] = {}
    for raw_token in text.split(";"):
        token = raw_token.strip()
        if not token:
            continue
        name, sep, raw = token.partition(":")
        name, raw = name.strip(), raw.strip()
        if not sep or not name or not _NAME.match(name):
            raise InvalidAttribute(f"attribute {token!r} must look like name:value")
        if name in values:
            raise InvalidAttribute(f"attribute {name!r} is given twice")
        try:
            values[name] = _parse_value(name, raw)
        except InvalidAttribute:
            raise
        except InvalidResource as error:
            raise InvalidAttribute(str(error)) from None
    return Attributes(values)


def _parse_value(name: str, raw: str) -> AttributeValue:
    what = f"attribute {name!r}"
    if raw.startswith("[") and raw.endswith("]"):
        pairs = []
        for part in filter(None, (p.strip() for p in raw[1:-1].split(","))):
            match = _RANGE.match(part)
            if match is None:
                raise InvalidAttribute(f"{what}: cannot parse range {part!r}")
            pairs.append((int(match.group(1)), int(match.group(2))))
        return make_ranges(pairs, what)
    if raw.startswith("{") and raw.endswith("}"):
        return make_set([p.strip() for p in raw[1:-1].split(",") if p.strip()], what)
    try:
        float(raw)
    except ValueError:
        if not raw:
            raise InvalidAttribute(f"{what} has an empty value") from None
        return raw
    return scalar_to_millis(raw, what)


def format_attributes(attributes: Mapping[str, AttributeValue]) -> str:
    return ";".join(f"{k}:{format_attribute_value(v)}" for k, v in attributes.items())


def attributes_to_json(attributes: Mapping[str, AttributeValue]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, value in attributes.items():
        if isinstance(value, str):
            out.append({"name": name, "type": "TEXT", "text": {"value": value}})
        elif isinstance(value, int):
            out.append({"name": name, "type": "SCALAR", "scalar": {"value": value / 1000}})
        elif isinstance(value, tuple):
            ranges = [{"begin": b, "end": e} for b, e in value]
            out.append({"name": name, "type": "RANGES", "ranges": {"range": ranges}})
        else:
            out.append({"name": name, "type": "SET", "set": {"item": sorted(value)}})
    return out
