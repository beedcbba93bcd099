"""Strict input (contract 1.1): bodies with one value per key, only the query parameters an
operation declares, and errors in the API's words with the field they are about.

msgspec decodes and checks every body against its Struct; it does not notice a repeated
key (the last value would win: `{"amount":"1","amount":"2"}` would pay 2), so a body is
first scanned by the standard library's JSON parser for repeats (~2 µs for a payment).
"""

from __future__ import annotations

import json
import re
import types
import typing
from datetime import datetime
from typing import Any, Literal, TypeVar

import msgspec
from multidict import MultiMapping

from gateway.errors import ApiError
from rayledger.patterns import PATTERN_WORDS

T = TypeVar("T")
AMOUNT_FIELDS = frozenset({"amount", "overdraft_limit"})


class _Repeated(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_repeats(pairs: list[tuple[str, Any]]) -> None:
    if len(pairs) > 1 and len(dict(pairs)) != len(pairs):  # dict(): built in C, once per object
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _Repeated(k)
            seen.add(k)


def _integral(text: str) -> int | float:
    """JSON Schema calls 6.0 an integer, so the API takes it where an integer is due."""
    value = float(text)
    return int(value) if value.is_integer() else value


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity: Python's parser takes them, JSON does not


_scan = json.JSONDecoder(object_pairs_hook=_no_repeats, parse_constant=_not_json)  # built once: ~2x cheaper
_lenient = json.JSONDecoder(object_pairs_hook=dict, parse_float=_integral)
_decoders: dict[type, msgspec.json.Decoder[Any]] = {}


def decode_body(body: bytes, type_: type[T]) -> T:
    try:
        _scan.decode(body.decode())
    except _Repeated as exc:
        param = _repeated_at(body.decode()) or exc.key
        raise ApiError("validation_error", f"{param} is given more than once", param) from None
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError("validation_error", "the body is not valid JSON") from None
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = _decoders[type_] = msgspec.json.Decoder(type_)
    try:
        return decoder.decode(body)
    except msgspec.DecodeError as exc:
        if not isinstance(exc, msgspec.ValidationError):  # JSON the scan let through (a lone surrogate)
            raise ApiError("validation_error", "the body is not valid JSON") from None
        if "got `float`" in str(exc):  # maybe 6.0 for an integer: read the numbers again
            try:
                return msgspec.convert(_lenient.decode(body.decode()), type_)
            except msgspec.ValidationError as again:
                exc = again
        raise _refusal(exc, type_, body) from None


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as all its pairs, repeats included."""


def _repeated_at(text: str) -> str | None:
    """Where a repeated key is, as a param: "amount", "metadata.k", "legs[1].amount"."""

    def walk(node: Any, path: str) -> str | None:
        if isinstance(node, _Pairs):
            seen: set[str] = set()
            for key, _ in node:
                if key in seen:
                    return f"{path}.{key}".lstrip(".")
                seen.add(key)
            items: list[tuple[str, Any]] = [(f"{path}.{k}", v) for k, v in node]
        elif isinstance(node, list):
            items = [(f"{path}[{n}]", v) for n, v in enumerate(node)]
        else:
            return None
        return next((found for p, v in items if (found := walk(v, p)) is not None), None)

    return walk(json.JSONDecoder(object_pairs_hook=_Pairs).decode(text), "")


# -- errors in the API's words ------------------------------------------------------------------
_AT = re.compile(r" - at (?:`key` in )?`\$(?P<path>[^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<field>[^`]+)`$")
_TYPE = re.compile(r"^Expected `(?P<want>[^`]+)`, got `(?P<got>[^`]+)`$")
_LENGTH = re.compile(r"^Expected `(?P<kind>str|array|object)` of length (?P<op>[<>]=) (?P<n>\d+)$")
_BOUND = re.compile(r"^Expected `(?P<kind>int|float)` (?P<op>[<>]=?) (?P<n>-?[\d.]+)$")
_PATTERN = re.compile(r"^Expected `str` matching regex '(?P<pattern>.*)'$")
_ENUM = re.compile(r"^Invalid enum value (?P<value>.+)$")
_JSON_TYPES = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
               "object": "an object", "array": "an array", "null": "null"}  # fmt: skip


def _param(path: str) -> str:
    """`$.payments[3].amount` -> "payments[3].amount"."""
    return path.lstrip(".")


def _refusal(exc: msgspec.ValidationError, type_: type, body: bytes) -> ApiError:
    text = str(exc)
    at = _AT.search(text)
    path = at.group("path") if at else ""
    message = text[: at.start()] if at else text
    if "[...]" in path or (at and "`key` in" in at.group(0)):  # in a map (metadata): name its key
        return _map_refusal(type_, body, path, key="`key` in" in text)
    if m := _MISSING.match(message):
        param = _param(f"{path}.{m['field']}")
        return ApiError("validation_error", f"{param} is required", param)
    if m := _UNKNOWN.match(message):
        param = _param(f"{path}.{m['field']}")
        return ApiError("validation_error", f"{param} is not a field of this request", param)
    param = _param(path) or None
    name = param or "the body"
    code = "invalid_amount" if param is not None and param.rsplit(".", 1)[-1] in AMOUNT_FIELDS else "validation_error"
    if m := _TYPE.match(message):
        want = " or ".join(_JSON_TYPES.get(w.strip(), w.strip()) for w in m["want"].split("|"))
        if code == "invalid_amount":
            return ApiError(
                code, f'{name} must be a decimal string such as "10", not {_JSON_TYPES.get(m["got"])}', param
            )
        return ApiError(code, f"{name} must be {want}", param)
    if m := _LENGTH.match(message):
        unit = {"str": "character", "array": "item", "object": "key"}[m["kind"]] + ("" if m["n"] == "1" else "s")
        most = "at most" if m["op"] == "<=" else "at least"
        return ApiError(code, f"{name} must have {most} {m['n']} {unit}", param)
    if m := _BOUND.match(message):
        words = {"<=": "at most", ">=": "at least", "<": "less than", ">": "greater than"}[m["op"]]
        return ApiError(code, f"{name} must be an integer {words} {m['n']}", param)
    if m := _PATTERN.match(message):
        words = PATTERN_WORDS.get(m["pattern"].encode().decode("unicode_escape"), "in the documented format")
        return ApiError(code, f"{name} must be {words}", param)
    if _ENUM.match(message):
        allowed = _literal_values(type_, path)
        listed = ", ".join(allowed) if allowed else "a documented value"
        return ApiError(code, f"{name} must be one of: {listed}", param)
    return ApiError(code, f"{name} is not valid", param)


def _map_refusal(type_: type, body: bytes, path: str, *, key: bool) -> ApiError:
    """A refusal inside a map such as metadata, naming the entry: msgspec's path stops at the
    map ("$.metadata[...]"), so the first entry its type refuses is found again here."""
    map_path = path.split("[...]", 1)[0]
    map_type = _type_at(type_, map_path)
    key_type, value_type = typing.get_args(map_type) or (Any, Any)
    found: Any = _lenient.decode(body.decode())
    for part in re.findall(r"\.(\w+)|\[(\d+)\]", map_path):
        found = found[part[0]] if part[0] else found[int(part[1])]
    name = _param(map_path)
    for k, v in found.items():
        try:
            msgspec.convert(k, key_type) if key else msgspec.convert(v, value_type)
        except msgspec.ValidationError as exc:
            why = _refusal(exc, type_, body).detail.removeprefix("the body ")
            if key:
                return ApiError(
                    "validation_error", f"each key of {name} {why} ({json.dumps(k)} does not)", f"{name}.{k}"
                )
            return ApiError("validation_error", f"{name}.{k} {why}", f"{name}.{k}")
    return ApiError("validation_error", f"{name} is not valid", name)


def _type_at(type_: Any, path: str) -> Any:
    """The type at `path` (".status", ".legs[0].amount", ".metadata[...]") in `type_`."""
    for field, _index in re.findall(r"\.(\w+)|(\[(?:\d+|\.\.\.)\])", path):
        type_ = _unwrap(type_)
        if field:
            hints = typing.get_type_hints(type_, include_extras=True) if isinstance(type_, type) else {}
            type_ = hints.get(field)
        else:  # an item of a list (list[X] -> X) or a value of a map (dict[K, V] -> V)
            type_ = (typing.get_args(type_) or (None,))[-1]
    return _unwrap(type_)


def _literal_values(type_: Any, path: str) -> list[str]:
    """The values allowed at `path` (".status", ".events[0]") in `type_`."""
    found = _type_at(type_, path)
    return [a for a in typing.get_args(found) if isinstance(a, str)] if typing.get_origin(found) is Literal else []


def _unwrap(t: Any) -> Any:
    """Annotated[X, ...] -> X; X | None -> X (X | UnsetType too); list[X] stays."""
    while True:
        origin = typing.get_origin(t)
        if origin is typing.Annotated:
            t = typing.get_args(t)[0]
        elif origin in (typing.Union, types.UnionType):
            rest = [a for a in typing.get_args(t) if a not in (type(None), msgspec.UnsetType)]
            if len(rest) != 1:
                return t
            t = rest[0]
        else:
            return t


# -- query parameters -----------------------------------------------------------------------------
def parse_query(query: MultiMapping[str], declared: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The declared query parameters, checked against their (OpenAPI) schemas and
    converted (integers, RFC 3339 times as epoch ms); any other parameter is refused."""
    out: dict[str, Any] = {}
    for name in query:
        if name not in declared:
            if declared:
                listed = ", ".join(declared)
                detail = f"{name} is not a query parameter here (allowed: {listed})"
            else:
                detail = f"{name} is not a query parameter here (this operation takes none)"
            raise ApiError("validation_error", detail, name)
        values = query.getall(name)
        if len(values) != 1:
            raise ApiError("validation_error", f"{name} is given more than once", name)
        out[name] = _query_value(name, values[0], declared[name])
    return out


def _query_value(name: str, raw: str, schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    if kind == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
            raise ApiError("validation_error", f"{name} must be an integer from {low} to {high}", name)
        value = int(raw)
        if (low is not None and value < low) or (high is not None and value > high):
            raise ApiError("validation_error", f"{name} must be an integer from {low} to {high}", name)
        return value
    if "enum" in schema and raw not in schema["enum"]:
        raise ApiError("validation_error", f"{name} must be one of: {', '.join(schema['enum'])}", name)
    if not schema.get("minLength", 0) <= len(raw) <= schema.get("maxLength", 1 << 30):
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        raise ApiError("validation_error", f"{name} must have {low} to {high} characters", name)
    if schema.get("format") == "date-time":
        return _rfc3339_ms(name, raw)
    if "pattern" in schema and not re.search(schema["pattern"], raw):
        words = PATTERN_WORDS.get(schema["pattern"], "in the documented format")
        raise ApiError("validation_error", f"{name} must be {words}", name)
    return raw


_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")


def _rfc3339_ms(name: str, raw: str) -> int:
    if not _RFC3339.fullmatch(raw):
        raise ApiError("validation_error", f"{name} must be an RFC 3339 time such as 2026-12-01T09:30:00Z", name)
    try:
        at = datetime.fromisoformat(raw.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise ApiError("validation_error", f"{name} is not a real time", name) from None
    return max(0, int(at.timestamp() * 1000))  # ids carry no time before 1970: nothing is older
