"""A fast path for the common subset of CEL: expressions compiled to Python closures.

The ``cel`` package (Rust) converts every value it is handed into CEL values on each call,
which costs more than evaluating a small expression. Rule conditions are mostly small:
field access, comparisons, boolean logic, arithmetic, ``in``, ``has()``, the conversions, the
string functions, ``matches()`` (on RE2), the comprehension macros and the extension
functions of ``celstdlib``. This module compiles that subset into closures over the original
Python values, with the ``cel`` package's semantics (no implicit numeric coercion, int64
overflow, error absorption by ``&&``/``||``...). Anything outside the subset raises
``Unsupported`` at compile time (or, for a value it does not know, at evaluation) and the
caller uses the ``cel`` package; a differential test keeps both in agreement.

Work is bounded: ``celshape.check_shape`` refuses sources too long or too deeply nested for
either parser (call it first), and an evaluation that would take more than ``MAX_COST`` steps
(comprehension iterations, elements compared, bytes concatenated or scanned) stops with a
``CelError``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import cel

from stream_engine.core.celregex import translate_pattern
from stream_engine.core.celshape import COMPREHENSIONS
from stream_engine.core.celstdlib import FUNCTIONS as EXTENSIONS
from stream_engine.core.celtime import ACCESSORS, DURATION_ACCESSORS, utc_timestamp, zone
from stream_engine.core.regex import Regex
from stream_engine.errors import RegexError

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
UINT_MAX = 2**64 - 1

#: Steps one evaluation may take (about 0.25 s of work): a comprehension costs its body's size
#: in tokens for each element, comparing or searching a list or map four steps per element, a
#: concatenation one per 64 bytes (or per element) of its result, string work inside a
#: comprehension one per 64 bytes.
MAX_COST = 1_000_000

Env = dict[str, Any]
Node = Callable[[Env], Any]

#: Where an evaluation keeps its remaining budget (not an identifier: CEL cannot name it).
_COST = " cost"


class Unsupported(Exception):
    """The expression uses CEL outside the fast subset; use the full implementation."""


class CelError(Exception):
    """A CEL evaluation error (no such key, no such overload, overflow...)."""


class NoSuchKey(CelError):
    """A field or map key that is not there."""

    def __init__(self, key: Any) -> None:
        super().__init__(f"no such key {key!r} (guard it with has())")
        self.key = key


# -- tokens for the fast parser ------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>[\t\n\f\r ]+)
  | (?P<double>(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+)
  | (?P<hex>0[xX][0-9a-fA-F]+)(?P<hexu>[uU])?
  | (?P<int>[0-9]+)(?P<intu>[uU])?
  | (?P<raw>[rR])?(?P<str>'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\|\||&&|==|!=|<=|>=|[<>+\-*/%!?:.,()\[\]{}])
    """,
    re.VERBOSE,
)
_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "`": "`",
    "?": "?",
}
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|x[0-9a-fA-F]{2}|.)")
#: Words CEL reserves: no identifier may be one.
RESERVED = {
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
}


def _unescape(body: str) -> str:
    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        if code[0] in "uUx" and len(code) > 1:
            point = int(code[1:], 16)
            if 0xD800 <= point <= 0xDFFF or point > 0x10FFFF:
                raise Unsupported(f"escape \\{code}")
            return chr(point)
        if code in _ESCAPES:
            return _ESCAPES[code]
        raise Unsupported(f"escape \\{code}")

    return _ESCAPE.sub(one, body)


def _tokens(source: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if match is None:
            raise Unsupported(f"character {source[pos]!r}")
        pos = match.end()
        kind = match.lastgroup
        text = match.group(0)
        if kind == "ws":
            continue
        if kind == "double":
            out.append(("lit", float(text)))
        elif kind in ("hex", "hexu"):
            if match.group("hexu"):
                raise Unsupported("uint")
            out.append(("int", int(match.group("hex"), 16)))
        elif kind in ("int", "intu"):
            if match.group("intu"):
                raise Unsupported("uint")
            if len(match.group("int")) > 20:  # beyond int64 anyway; int() refuses 4,300 digits
                raise Unsupported("int literal out of range")
            out.append(("int", int(match.group("int"))))
        elif kind in ("str", "raw"):
            quoted = match.group("str")
            if quoted.startswith(("'''", '"""')):
                raise Unsupported("triple-quoted string")
            body = quoted[1:-1]
            out.append(("lit", body if match.group("raw") else _unescape(body)))
        elif kind == "ident":
            if text in ("true", "false"):
                out.append(("lit", text == "true"))
            elif text == "null":
                out.append(("lit", None))
            elif text == "in":
                out.append(("op", "in"))
            elif text in RESERVED:
                raise Unsupported(f"reserved word {text}")
            else:
                out.append(("ident", text))
        else:
            out.append(("op", text))
    out.append(("end", None))
    return out


# -- semantics ----------------------------------------------------------------------------


_KINDS: dict[type, str] = {
    str: "string",
    float: "double",
    bool: "bool",
    type(None): "null",
    list: "list",
    tuple: "list",
    dict: "map",
}


#: Timestamps and durations: values of the fast path, but no function's result (``_result``).
_TIME_KINDS: dict[type, str] = {datetime: "timestamp", timedelta: "duration"}


def _int_kind(value: int) -> str:
    """Ints within int64 are ints; the ``cel`` package makes a uint of one up to 2^64 - 1
    (left to it) and a double of one beyond."""
    if INT_MIN <= value <= INT_MAX:
        return "int"
    if INT_MAX < value <= UINT_MAX:
        raise Unsupported("uint value")
    return "double"


def _kind(value: Any) -> str:
    """The CEL type name of a Python value (as the ``cel`` package maps them)."""
    cls = type(value)
    if cls is int:
        return _int_kind(value)
    kind = _KINDS.get(cls) or _TIME_KINDS.get(cls)
    if kind is not None:
        return kind
    if value is True or value is False:
        return "bool"
    if isinstance(value, int):
        return _int_kind(int(value))
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, dict):
        return "map"
    if isinstance(value, datetime):
        return "timestamp"
    if isinstance(value, timedelta):
        return "duration"
    raise Unsupported(f"value of type {type(value).__name__}")


def _num(value: Any) -> Any:
    """Ints beyond 64 bits become doubles, as the ``cel`` package converts them."""
    if type(value) is int and not INT_MIN <= value <= INT_MAX and _int_kind(value) == "double":
        try:
            return float(value)
        except OverflowError:
            raise CelError("conversion error: integer too large for a double") from None
    return value


def _overload(op: str, left: Any, right: Any = None) -> CelError:
    kinds = _kind(left) if right is None else f"{_kind(left)} {op} {_kind(right)}"
    return CelError(f"no such overload: {op} on {kinds}")


def _check_int(value: int, op: str) -> int:
    if not INT_MIN <= value <= INT_MAX:
        raise CelError(f"arithmetic overflow in '{op}'")
    return value


def _cost_exceeded() -> CelError:
    return CelError(
        f"evaluation cost limit exceeded (more than {MAX_COST:,} steps): the expression does "
        "too much work for one record (a comprehension over large lists, nested "
        "comprehensions, or values that grow)"
    )


def _charge(env: Env, units: int) -> None:
    budget: list[int] = env[_COST]
    budget[0] -= units
    if budget[0] < 0:
        raise _cost_exceeded()


def _text_units(text: str) -> int:
    return 1 + (len(text) >> 6)


def _add(a: Any, b: Any) -> Any:
    if type(a) is str and type(b) is str:
        return a + b
    if type(a) is float and type(b) is float:
        return a + b
    ka, kb = _kind(a), _kind(b)
    if ka == "list" and kb == "map":
        return [*a, *_range("+", b)]  # the cel package appends the map's keys
    if kb == "duration" and ka in _TIME:  # duration + timestamp: no overload in the package
        return _time_result(lambda: a + b)
    if ka != kb:
        raise _overload("+", a, b)
    if ka == "int":
        return _check_int(a + b, "add")
    if ka in ("double", "string"):
        return _num(a) + _num(b)
    if ka == "list":
        return [*a, *b]
    raise _overload("+", a, b)


def _sub(a: Any, b: Any) -> Any:
    ka, kb = _kind(a), _kind(b)
    if ka in _TIME and (kb == "duration" or kb == ka):
        return _time_result(lambda: a - b)
    if ka != kb or ka not in ("int", "double"):
        raise _overload("-", a, b)
    return _check_int(a - b, "sub") if ka == "int" else _num(a) - _num(b)


def _mul(a: Any, b: Any) -> Any:
    if type(a) is float and type(b) is float:
        return a * b
    ka, kb = _kind(a), _kind(b)
    if ka != kb or ka not in ("int", "double"):
        raise _overload("*", a, b)
    return _check_int(a * b, "mul") if ka == "int" else _num(a) * _num(b)


def _div(a: Any, b: Any) -> Any:
    ka, kb = _kind(a), _kind(b)
    if ka != kb or ka not in ("int", "double"):
        raise _overload("/", a, b)
    if ka == "int":
        if b == 0:
            raise CelError("division by zero")
        quotient = abs(a) // abs(b)
        return _check_int(quotient if (a >= 0) == (b >= 0) else -quotient, "div")
    a, b = _num(a), _num(b)
    if b == 0.0:
        if a == 0.0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def _mod(a: Any, b: Any) -> Any:
    if _kind(a) != "int" or _kind(b) != "int":
        raise _overload("%", a, b)
    if b == 0:
        raise CelError("modulo by zero")
    if a == INT_MIN and b == -1:
        raise CelError("arithmetic overflow in 'rem'")
    remainder = abs(a) % abs(b)
    return remainder if a >= 0 else -remainder


_PLAIN = (str, bool, type(None))


def _equal(a: Any, b: Any, budget: list[int] | None = None) -> bool:
    """CEL equality; ``budget`` (when given) is charged one step per container element."""
    if type(a) is type(b) and type(a) in _PLAIN:
        return bool(a == b)
    ka, kb = _kind(a), _kind(b)
    if ka in ("int", "double") and kb in ("int", "double"):
        return bool(_num(a) == _num(b))
    if ka != kb:
        return False
    if ka == "list":
        if len(a) != len(b):
            return False
        _spend(budget, len(a))
        return all(_equal(x, y, budget) for x, y in zip(a, b, strict=True))
    if ka == "map":
        if len(a) != len(b):
            return False
        _spend(budget, 2 * len(a))  # a lookup as well as a comparison per entry
        return all(_has_key(b, k) and _equal(v, _lookup(b, k), budget) for k, v in a.items())
    return bool(a == b)


#: Steps for comparing one element of a list or map in Python (measured: about four times a
#: comprehension step).
_ELEMENT = 4


def _spend(budget: list[int] | None, elements: int) -> None:
    """Charge ``budget`` (when there is one) for visiting ``elements`` elements."""
    if budget is not None:
        budget[0] -= elements * _ELEMENT
        if budget[0] < 0:
            raise _cost_exceeded()


def _has_key(mapping: dict[Any, Any], key: Any) -> bool:
    if type(key) is str:
        return key in mapping
    return any(type(k) is type(key) and k == key for k in mapping)


def _lookup(mapping: dict[Any, Any], key: Any) -> Any:
    if type(key) is str:
        return mapping[key]
    for candidate, value in mapping.items():
        if type(candidate) is type(key) and candidate == key:
            return value
    raise KeyError(key)


def _order(op: str, a: Any, b: Any) -> bool:
    ka, kb = _kind(a), _kind(b)
    numeric = ka in ("int", "double") and kb in ("int", "double")
    if not numeric and (ka != kb or ka not in ("string", "bool", *_TIME)):
        raise _overload(op, a, b)
    if numeric:
        a, b = _num(a), _num(b)
    # strings: code-point order is UTF-8 byte order, which CEL compares
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    return bool(a >= b)


def _map_key_kind(key: Any, op: str, container: Any) -> None:
    """A map is searched only with an int, bool or string key, as the ``cel`` package does."""
    if _kind(key) not in ("int", "bool", "string"):
        raise _overload(op, key, container)


def _in(item: Any, container: Any, budget: list[int] | None = None) -> bool:
    kind = _kind(container)
    if kind == "list":
        _spend(budget, len(container))
        return any(_equal(item, element, budget) for element in container)
    if kind == "map":
        _map_key_kind(item, "in", container)
        if type(item) is str:
            return item in container
        _spend(budget, len(container))
        return _has_key(container, item)
    raise _overload("in", item, container)


def _select(value: Any, field: str) -> Any:
    if not isinstance(value, dict):
        raise CelError(f"cannot select field {field!r} from {_kind(value)}")
    if field not in value:
        raise NoSuchKey(field)
    return value[field]


def _index(value: Any, key: Any, budget: list[int] | None) -> Any:
    kind = _kind(value)
    if kind == "list":
        if _kind(key) != "int":
            raise _overload("[]", value, key)
        if not 0 <= key < len(value):
            raise CelError(f"index out of bounds: {key}")
        return value[key]
    if kind == "map":
        _map_key_kind(key, "[]", value)
        if type(key) is not str:
            _spend(budget, len(value))
        try:
            return _lookup(value, key)
        except KeyError:
            raise NoSuchKey(key) from None
    raise _overload("[]", value, key)


def _bool(value: Any, op: str) -> bool:
    if value is True or value is False:
        return value
    raise _overload(op, value)


_FLOAT_TEXT = re.compile(
    r"[+-]?(?:[0-9]+\.?[0-9]*(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)",
    re.IGNORECASE,
)
_INT_TEXT = re.compile(r"([+-]?)0*([0-9]+)")


def _to_int(value: Any) -> int:
    kind = _kind(value)
    if kind == "int":
        return int(value)
    if kind == "double":
        value = _num(value)
        if math.isnan(value) or not -(2.0**63) < value < 2.0**63:  # -2^63 too, as the package
            raise CelError("int() overflow")
        return int(value)
    if kind == "string":
        match = _INT_TEXT.fullmatch(value)
        if match is None:
            raise CelError("int() string parse error")
        sign, digits = match.groups()
        if len(digits) > 19:  # and int() would refuse over 4,300 digits with a ValueError
            raise CelError("int() string parse error: number too large to fit in an int")
        return _check_int(int(sign + digits), "int")
    raise _overload("int", value)


def _to_double(value: Any) -> float:
    kind = _kind(value)
    if kind in ("int", "double"):
        return float(_num(value))
    if kind == "string":
        if not _FLOAT_TEXT.fullmatch(value):
            raise CelError("double() string parse error")
        return float(value)
    raise _overload("double", value)


def _double_text(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _to_string(value: Any) -> str:
    kind = _kind(value)
    if kind in _TIME:
        raise Unsupported(f"string() of a {kind}")  # the package's own text form
    if kind == "string":
        return str(value)
    if kind == "int":
        return str(int(value))
    if kind == "double":
        return _double_text(float(_num(value)))
    raise _overload("string", value)


def _size(value: Any) -> int:
    kind = _kind(value)
    if kind == "string":
        return len(value) if value.isascii() else len(value.encode())
    if kind in ("list", "map"):
        return len(value)
    raise _overload("size", value)


def _strings(name: str, target: Any, arg: Any) -> tuple[str, str]:
    if _kind(target) != "string" or _kind(arg) != "string":
        raise _overload(name, target, arg)
    return target, arg


_TIME = ("timestamp", "duration")
#: The longest duration the ``cel`` package holds exactly (int64 nanoseconds); beyond, it
#: saturates, which is left to it.
_MAX_DURATION = timedelta(seconds=9_223_372_036)
_DURATION_TEXT = re.compile(r"[+-]?(?:[0-9]{1,12}(?:h|ms|m|s|us|ns))+")
_DURATION_PART = re.compile(r"([0-9]+)(h|ms|m|s|us|ns)")
_UNIT_NS = {"h": 3_600_000_000_000, "m": 60_000_000_000, "s": 1_000_000_000, "ms": 1_000_000}
_UNIT_NS |= {"us": 1_000, "ns": 1}
_DURATION_US = {
    "getHours": 3_600_000_000,
    "getMinutes": 60_000_000,
    "getSeconds": 1_000_000,
    "getMilliseconds": 1_000,
}


#: No time-zone argument (``t.getHours()``).
_NO_ZONE: Any = object()


def _time_result(compute: Callable[[], Any]) -> Any:
    """A timestamp or duration computed in Python, or ``Unsupported`` where it leaves the
    range both represent alike (years 1 to 9999; durations of int64 nanoseconds)."""
    try:
        result = compute()
    except OverflowError:
        raise Unsupported("time arithmetic out of range") from None
    if type(result) is timedelta and abs(result) > _MAX_DURATION:
        raise Unsupported("duration out of range")
    return result


def _to_timestamp(value: Any) -> datetime:
    """``timestamp()``: an RFC 3339 text in UTC (``celtime``, as on the package path)."""
    if _kind(value) not in ("string", "timestamp"):
        raise _overload("timestamp", value)
    try:
        return utc_timestamp(value)
    except ValueError as exc:
        raise CelError(f"timestamp: {exc}") from None


def _to_duration(value: Any) -> timedelta:
    """``duration()`` of whole numbers of units (``90m``, ``1h30m``); fractions, which the
    package computes in floating point, and other forms are left to it."""
    if _kind(value) == "duration":
        return value  # type: ignore[no-any-return]
    if type(value) is not str or not _DURATION_TEXT.fullmatch(value):
        raise Unsupported("duration text outside the fast subset")
    nanos = sum(int(n) * _UNIT_NS[unit] for n, unit in _DURATION_PART.findall(value))
    if nanos % 1000 or nanos > _MAX_DURATION // timedelta(microseconds=1) * 1000:
        raise Unsupported("duration finer than a microsecond, or out of range")
    delta = timedelta(microseconds=nanos // 1000)
    return -delta if value.startswith("-") else delta


def _accessor(name: str, target: Any, tz: Any = _NO_ZONE) -> int:
    """``t.getHours()`` (UTC), ``t.getHours('Europe/London')``, ``d.getHours()``."""
    cls = type(target)
    if cls is datetime and tz is _NO_ZONE:
        return ACCESSORS[name](target if target.tzinfo is UTC else target.astimezone(UTC))
    if cls is datetime and type(tz) is str:
        try:
            return ACCESSORS[name](target.astimezone(zone(tz)))
        except ValueError as exc:
            raise CelError(f"{name}: {exc}") from None
    if cls is timedelta and tz is _NO_ZONE and name in DURATION_ACCESSORS:
        micros: int = (target.days * 86_400 + target.seconds) * 1_000_000 + target.microseconds
        whole = abs(micros) // _DURATION_US[name]
        return whole if micros >= 0 else -whole
    if tz is _NO_ZONE:
        raise _overload(name, target)
    raise _overload(name, target, tz)


_FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "timestamp": _to_timestamp,
    "duration": _to_duration,
    "int": _to_int,
    "double": _to_double,
    "string": _to_string,
    "size": _size,
}
_METHODS: dict[str, Callable[[Any, Any], Any]] = {
    "startsWith": lambda t, a: str.startswith(*_strings("startsWith", t, a)),
    "endsWith": lambda t, a: str.endswith(*_strings("endsWith", t, a)),
    "contains": lambda t, a: str.__contains__(*_strings("contains", t, a)),
}


#: Extension functions whose results the fast path does not represent (optionals, bytes).
_NOT_FAST = frozenset({"first", "last", "base64.decode"})
_NAMESPACES = frozenset(name.split(".", 1)[0] for name in EXTENSIONS if "." in name)
#: What a Python function raising on its arguments raises.
_CALL_ERRORS = (
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    AttributeError,
    OverflowError,
    ZeroDivisionError,
)


def _weight(value: Any) -> int:
    """Steps for handing ``value`` to or from a function: its size, shallowly."""
    if type(value) is str:
        return _text_units(value)
    if type(value) is list or type(value) is dict or type(value) is tuple:
        return 1 + len(value)
    return 1


def _result(name: str, value: Any) -> Any:
    """A function's result as the ``cel`` package would see it, or ``Unsupported``."""
    if type(value) is int:
        if not INT_MIN <= value <= INT_MAX:
            raise Unsupported(f"{name}() result beyond int64")
        return value
    if type(value) in _KINDS:
        return value
    raise Unsupported(f"{name}() result of type {type(value).__name__}")


def _extension(name: str, function: Callable[..., Any], args: list[Node]) -> Node:
    def extension(env: Env) -> Any:
        values = [arg(env) for arg in args]
        _charge(env, sum(_weight(value) for value in values))
        try:
            result = function(*values)
        except _CALL_ERRORS as exc:
            raise CelError(f"function '{name}' failed: {type(exc).__name__}: {exc}") from None
        _charge(env, _weight(result))
        return _result(name, result)

    return extension


# -- parser: tokens to closures ------------------------------------------------------------


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = _tokens(source)
        self.pos = 0
        #: Whether some node spends from the evaluation budget (so one must be installed).
        self.costly = False
        #: How many comprehension bodies enclose the node being parsed.
        self.loops = 0

    def peek(self) -> tuple[str, Any]:
        return self.tokens[self.pos]

    def take(self) -> tuple[str, Any]:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def accept(self, op: str) -> bool:
        if self.tokens[self.pos] == ("op", op):
            self.pos += 1
            return True
        return False

    def expect(self, op: str) -> None:
        if not self.accept(op):
            raise Unsupported(f"expected {op}")

    def parse(self) -> Node:
        node = self.conditional()
        if self.peek()[0] != "end":
            raise Unsupported("trailing input")
        if not self.costly:
            return node

        def budgeted(env: Env) -> Any:
            env[_COST] = [MAX_COST]
            return node(env)

        return budgeted

    def conditional(self) -> Node:
        """``c1 ? y1 : c2 ? y2 : n`` without recursion for the chain."""
        branches: list[tuple[Node, Node]] = []
        node = self.logical_or()
        while self.accept("?"):
            yes = self.logical_or()
            self.expect(":")
            branches.append((node, yes))
            node = self.logical_or()
        for cond, yes in reversed(branches):
            node = _ternary(cond, yes, node)
        return node

    def logical_or(self) -> Node:
        operands = [self.logical_and()]
        while self.accept("||"):
            operands.append(self.logical_and())
        return operands[0] if len(operands) == 1 else _logic(operands, short=True)

    def logical_and(self) -> Node:
        operands = [self.relation()]
        while self.accept("&&"):
            operands.append(self.relation())
        return operands[0] if len(operands) == 1 else _logic(operands, short=False)

    def relation(self) -> Node:
        node = self.addition()
        while True:
            kind, op = self.peek()
            if kind != "op" or op not in ("<", "<=", ">", ">=", "==", "!=", "in"):
                return node
            self.take()
            node = self.relate(op, node, self.addition())

    def relate(self, op: str, left: Node, right: Node) -> Node:
        if op in ("==", "!=") and not (_scalar_constant(left) or _scalar_constant(right)):
            self.costly = True
            return _container_equality(op, left, right)
        if op == "in" and getattr(right, "constant_list", None) is None:
            self.costly = True
        return _relation(op, left, right)

    def addition(self) -> Node:
        node = self.multiplication()
        while True:
            if self.accept("+"):
                right = self.multiplication()
                if _number_constant(node) or _number_constant(right):
                    node = _binary(_add, node, right)
                else:
                    self.costly = True
                    node = _concatenation(node, right)
            elif self.accept("-"):
                node = _binary(_sub, node, self.multiplication())
            else:
                return node

    def multiplication(self) -> Node:
        node = self.unary()
        while True:
            if self.accept("*"):
                node = _binary(_mul, node, self.unary())
            elif self.accept("/"):
                node = _binary(_div, node, self.unary())
            elif self.accept("%"):
                node = _binary(_mod, node, self.unary())
            else:
                return node

    def unary(self) -> Node:
        """A run of ``!`` and ``-`` prefixes becomes one node (no recursion per prefix)."""
        prefixes: list[str] = []
        while True:
            if self.accept("!"):
                prefixes.append("!")
            elif self.accept("-"):
                if self.peek()[0] == "int":
                    value = -self.take()[1]
                    if value < INT_MIN:
                        raise Unsupported("int literal out of range")
                    return _prefixed(prefixes, self.member(_const(value)))
                prefixes.append("-")
            else:
                return _prefixed(prefixes, self.member(self.primary()))

    def member(self, node: Node) -> Node:
        while True:
            if self.accept("."):
                kind, name = self.take()
                if kind != "ident":
                    raise Unsupported("field name expected")
                if self.accept("("):
                    if name in COMPREHENSIONS:
                        node = self.comprehension(node, name)
                    else:
                        node = self.method(node, name, self.arguments())
                else:
                    node = _selector(node, name)
            elif self.accept("["):
                key = self.conditional()
                self.expect("]")
                self.costly = True
                node = _indexer(node, key)
            else:
                return node

    def arguments(self) -> list[Node]:
        args: list[Node] = []
        if self.accept(")"):
            return args
        while True:
            args.append(self.conditional())
            if self.accept(")"):
                return args
            self.expect(",")

    def comprehension(self, target: Node, name: str) -> Node:
        """``range.all(x, p)``, ``exists``, ``exists_one``, ``map(x, t)``, ``map(x, p, t)``,
        ``filter(x, p)``: one pass over the range, the body's size charged per element."""
        kind, var = self.take()
        if kind != "ident":
            raise Unsupported("comprehension variable expected")
        self.expect(",")
        start = self.pos
        self.loops += 1
        args = self.arguments()
        self.loops -= 1
        self.costly = True
        per_item = 1 + self.pos - start
        if name == "map" and len(args) in (1, 2):
            return _comprehension(name, target, var, args, per_item)
        if len(args) != 1:
            raise Unsupported(f"{name}() with {len(args) + 1} arguments")
        return _comprehension(name, target, var, args, per_item)

    def method(self, target: Node, name: str, args: list[Node]) -> Node:
        if name == "size" and not args:
            return self.text_work(lambda value: _size(value), target)
        if name == "contains" and len(args) == 1:
            return self.extension(name, [target, *args])  # strings built in, lists and maps not
        if name in _METHODS and len(args) == 1:
            function = _METHODS[name]
            arg = args[0]
            if self.loops:
                self.costly = True

                def charged(env: Env) -> Any:
                    value = target(env)
                    if type(value) is str:
                        _charge(env, _text_units(value))
                    return function(value, arg(env))

                return charged
            return lambda env: function(target(env), arg(env))
        if name == "matches" and len(args) == 1:
            return self.text_work(_matcher(args[0]), target)
        if name in ACCESSORS and not args:
            return lambda env: _accessor(name, target(env))
        if name in ACCESSORS and len(args) == 1:
            zone_arg = args[0]
            return lambda env: _accessor(name, target(env), zone_arg(env))
        if name in EXTENSIONS and name not in _NOT_FAST:
            return self.extension(name, [target, *args])
        raise Unsupported(f"method {name}")

    def extension(self, name: str, args: list[Node]) -> Node:
        """A call of one of ``celstdlib``'s functions, on the values as they are."""
        self.costly = True
        return _extension(name, EXTENSIONS[name], args)

    def qualified(self, namespace: str) -> str | None:
        """``math.abs(``...: the extension function a namespace and a call name (else None)."""
        tokens = self.tokens[self.pos : self.pos + 3]
        if len(tokens) < 3 or tokens[0] != ("op", ".") or tokens[2] != ("op", "("):
            return None
        name = f"{namespace}.{tokens[1][1]}"
        if name not in EXTENSIONS or name in _NOT_FAST:
            return None
        self.pos += 3
        return name

    def text_work(self, function: Callable[[Any], Any], arg: Node) -> Node:
        """``function(arg)``, charged by the length of a string argument inside a loop."""
        if not self.loops:
            return lambda env: function(arg(env))
        self.costly = True

        def charged(env: Env) -> Any:
            value = arg(env)
            if type(value) is str:
                _charge(env, _text_units(value))
            return function(value)

        return charged

    def primary(self) -> Node:
        kind, value = self.take()
        if kind in ("lit", "int"):
            if kind == "int" and value > INT_MAX:
                raise Unsupported("int literal out of range")
            return _const(value)
        if kind == "ident":
            if self.accept("("):
                return self.call(value)
            qualified = self.qualified(value) if value in _NAMESPACES else None
            if qualified is not None:
                return self.extension(qualified, self.arguments())
            return _variable(value)
        if (kind, value) == ("op", "("):
            node = self.conditional()
            self.expect(")")
            return node
        if (kind, value) == ("op", "["):
            items = self.list_items()
            if all(getattr(item, "constant", False) for item in items):
                frozen = [item(Env()) for item in items]

                def literal(env: Env) -> list[Any]:
                    return list(frozen)

                literal.constant_list = frozen  # type: ignore[attr-defined]
                return literal
            return lambda env: [item(env) for item in items]
        raise Unsupported(f"token {value!r}")

    def list_items(self) -> list[Node]:
        items: list[Node] = []
        if self.accept("]"):
            return items
        while True:
            items.append(self.conditional())
            if self.accept(","):
                if self.accept("]"):
                    return items
                continue
            self.expect("]")
            return items

    def call(self, name: str) -> Node:
        if name == "has":
            return self.has()
        if name in COMPREHENSIONS:
            raise Unsupported(f"{name}() called as a function")
        args = self.arguments()
        if name in _FUNCTIONS and len(args) == 1:
            function = _FUNCTIONS[name]
            if name in ("size", "double", "int"):
                return self.text_work(function, args[0])
            arg = args[0]
            if name in _TIME_FUNCTIONS and _scalar_constant(arg):
                return _folded(function, arg)
            return lambda env: function(arg(env))
        if name in EXTENSIONS and name not in _NOT_FAST:
            return self.extension(name, args)
        raise Unsupported(f"function {name}")

    def has(self) -> Node:
        """``has(a.b.f)``: the argument must end in a field selection."""
        node = self.primary()
        holder: Node | None = None
        field = ""
        while True:
            if self.accept("."):
                kind, name = self.take()
                if kind != "ident" or self.peek() == ("op", "("):
                    raise Unsupported("has() needs a field selection")
                holder, field = node, name
                node = _selector(node, name)
            elif self.accept("["):
                key = self.conditional()
                self.expect("]")
                holder = None
                self.costly = True
                node = _indexer(node, key)
            else:
                break
        self.expect(")")
        if holder is None:
            raise Unsupported("has() needs a field selection")
        found = holder
        return lambda env: _has(found(env), field)


#: Functions of a literal computed once, when the expression compiles.
_TIME_FUNCTIONS = frozenset({"timestamp", "duration"})


def _folded(function: Callable[[Any], Any], arg: Node) -> Node:
    """``function`` of a literal, computed now; a literal it fails on fails each evaluation
    as it would unfolded; one outside the fast subset leaves the expression to the package."""
    try:
        return _const(function(arg(Env())))
    except CelError:
        return lambda env: function(arg(env))


def _const(value: Any) -> Node:
    def constant(env: Env) -> Any:
        return value

    constant.constant = True  # type: ignore[attr-defined]
    constant.value = value  # type: ignore[attr-defined]
    return constant


def _scalar_constant(node: Node) -> bool:
    """A literal that is not a container: comparing with it is constant time."""
    return getattr(node, "constant", False) and not isinstance(
        getattr(node, "value", None), list | dict
    )


def _number_constant(node: Node) -> bool:
    """A numeric literal: ``+`` with it cannot concatenate."""
    value = getattr(node, "value", None)
    return getattr(node, "constant", False) and type(value) in (int, float)


def _variable(name: str) -> Node:
    def variable(env: Env) -> Any:
        try:
            value = env[name]
        except KeyError:
            raise CelError(f"undefined variable: {name}") from None
        return _num(value) if type(value) is int else value

    return variable


def _selector(node: Node, field: str) -> Node:
    def selector(env: Env) -> Any:
        holder = node(env)
        if type(holder) is dict:
            try:
                value = holder[field]
            except KeyError:
                raise NoSuchKey(field) from None
        else:
            value = _select(holder, field)
        return _num(value) if type(value) is int else value

    return selector


def _indexer(node: Node, key: Node) -> Node:
    return lambda env: _num(_index(node(env), key(env), env[_COST]))


def _has(value: Any, field: str) -> bool:
    if not isinstance(value, dict):
        raise CelError(f"has() on {_kind(value)}")
    return field in value


def _negate(value: Any) -> Any:
    kind = _kind(value)
    if kind == "int":
        return _check_int(-value, "neg")
    if kind == "double":
        return -_num(value)
    if kind == "bool":
        return not value  # the cel package negates a bool into its logical not
    raise _overload("-_", value)


def _prefixed(prefixes: list[str], inner: Node) -> Node:
    """``inner`` under a run of ``!`` or of ``-``: as the ``cel`` package parses it, an even run
    is no operator at all and an odd one a single operator."""
    if len(set(prefixes)) > 1:
        raise Unsupported("mixed prefix operators")
    if len(prefixes) % 2 == 0:
        return inner
    if prefixes[0] == "!":
        return lambda env: not _bool(inner(env), "!_")
    return lambda env: _negate(inner(env))


def _ternary(cond: Node, yes: Node, no: Node) -> Node:
    def ternary(env: Env) -> Any:
        return yes(env) if _bool(cond(env), "_?_:_") else no(env)

    return ternary


def _binary(function: Callable[[Any, Any], Any], left: Node, right: Node) -> Node:
    return lambda env: function(left(env), right(env))


def _concatenation(left: Node, right: Node) -> Node:
    """``+`` that may join strings or lists: the result's size is charged."""

    def concatenation(env: Env) -> Any:
        result = _add(left(env), right(env))
        if type(result) is str:
            _charge(env, _text_units(result))
        elif type(result) is list:
            _charge(env, 1 + len(result))
        return result

    return concatenation


def _container_equality(op: str, left: Node, right: Node) -> Node:
    """``==`` or ``!=`` between values that may be lists or maps: their elements are charged."""
    equal = op == "=="

    def equality(env: Env) -> bool:
        a, b = left(env), right(env)
        if type(a) is type(b) and type(a) in _SAME:
            return (a == b) is equal
        return _equal(a, b, env[_COST]) is equal

    return equality


def _relation(op: str, left: Node, right: Node) -> Node:
    if op in ("==", "!="):
        return _scalar_equality(op == "==", left, right)
    if op == "in":
        frozen = getattr(right, "constant_list", None)
        if frozen is not None and frozen and all(type(v) is str for v in frozen):
            strings = frozenset(frozen)

            def in_strings(env: Env) -> bool:
                item = left(env)
                if type(item) is str:
                    return item in strings
                _kind(item)
                return False

            return in_strings
        if frozen is not None:
            return lambda env: _in(left(env), frozen)
        return lambda env: _in(left(env), right(env), env[_COST])
    return _ordering(op, left, right)


#: Types compared by Python exactly as CEL compares them (node results: ints within int64).
_SAME = frozenset({str, int, float, bool, type(None)})
_ORDERS: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _scalar_equality(equal: bool, left: Node, right: Node) -> Node:
    """``==`` or ``!=``: values of one plain type compare directly (the common case)."""

    def equality(env: Env) -> bool:
        a, b = left(env), right(env)
        if type(a) is type(b) and type(a) in _SAME:
            return (a == b) is equal
        return _equal(a, b) is equal

    return equality


def _ordering(op: str, left: Node, right: Node) -> Node:
    """``<``, ``<=``, ``>``, ``>=``: two ints, doubles or strings compare directly."""
    compare = _ORDERS[op]

    def ordering(env: Env) -> bool:
        a, b = left(env), right(env)
        if type(a) is type(b) and type(a) in _ORDERED:
            return bool(compare(a, b))
        return _order(op, a, b)

    return ordering


_ORDERED = frozenset({str, int, float})


def _logic(operands: list[Node], short: bool) -> Node:
    """``||`` (short=True) and ``&&`` over a chain: a decisive value on any operand wins over
    an error on another; else the first error is raised."""
    name = "_||_" if short else "_&&_"
    decisive: bool = short
    first_node, *rest = operands

    def logic(env: Env) -> bool:
        error: CelError | None = None
        try:
            value = first_node(env)
        except CelError as exc:
            error = exc
        else:
            if value is short:
                return decisive
            if value is not (not short):
                error = _overload(name, value)
        for node in rest:
            try:
                value = node(env)
            except CelError as exc:
                if error is None:
                    error = exc
                continue
            if value is short:
                return decisive
            if value is not (not short) and error is None:
                error = _overload(name, value)
        if error is not None:
            raise error
        return not short

    return logic


def _range(name: str, value: Any) -> list[Any] | tuple[Any, ...]:
    """The elements a comprehension visits: a list's items, a map's keys."""
    if type(value) is list or type(value) is tuple:
        return value
    if type(value) is dict:
        for key in value:
            _kind(key)
        return list(value)
    kind = _kind(value)
    if kind == "list":
        return list(value)
    if kind == "map":
        return list(value)
    raise _overload(name, value)


def _comprehension(name: str, target: Node, var: str, args: list[Node], per_item: int) -> Node:
    body = args[0]

    def items(env: Env) -> tuple[list[Any] | tuple[Any, ...], Env]:
        values = _range(name, target(env))
        _charge(env, 1 + len(values) * per_item)
        return values, dict(env)

    if name == "all":

        def run_all(env: Env) -> bool:
            values, scope = items(env)
            for value in values:
                scope[var] = value
                if not _bool(body(scope), "all"):
                    return False
            return True

        return run_all
    if name == "exists":

        def run_exists(env: Env) -> bool:
            values, scope = items(env)
            for value in values:
                scope[var] = value
                if _bool(body(scope), "exists"):
                    return True
            return False

        return run_exists
    if name == "exists_one":

        def run_exists_one(env: Env) -> bool:
            values, scope = items(env)
            found = 0
            for value in values:
                scope[var] = value
                found += _bool(body(scope), "exists_one")
            return found == 1

        return run_exists_one
    if name == "filter":

        def run_filter(env: Env) -> list[Any]:
            values, scope = items(env)
            kept = []
            for value in values:
                scope[var] = value
                if _bool(body(scope), "filter"):
                    kept.append(_num(value))
            return kept

        return run_filter
    if len(args) == 1:

        def run_map(env: Env) -> list[Any]:
            values, scope = items(env)
            out = []
            for value in values:
                scope[var] = value
                out.append(body(scope))
            return out

        return run_map
    transform = args[1]

    def run_filter_map(env: Env) -> list[Any]:
        values, scope = items(env)
        out = []
        for value in values:
            scope[var] = value
            if _bool(body(scope), "map"):
                out.append(transform(scope))
        return out

    return run_filter_map


_REFERENCE_MATCHES = cel.compile("t.matches(p)")


def _matcher(pattern: Node) -> Callable[[Any], bool]:
    """``matches()`` with a constant pattern, on RE2 with the ``cel`` package's (Rust regex)
    meaning of the pattern; a pattern whose meaning could differ is left to the package."""
    if not getattr(pattern, "constant", False):
        raise Unsupported("matches() with a computed pattern")
    text = pattern(Env())
    if not isinstance(text, str):
        raise Unsupported("matches() pattern must be a string")
    try:
        compiled = Regex(translate_pattern(text))
        _REFERENCE_MATCHES.execute({"t": "", "p": text})
    except RegexError as exc:
        raise Unsupported(f"pattern {text!r}: {exc}") from None
    except (RuntimeError, ValueError, TypeError):
        raise Unsupported(f"pattern {text!r}: the cel package refuses it") from None

    def matches(value: Any) -> bool:
        if _kind(value) != "string":
            raise _overload("matches", value)
        return compiled.search(value)

    return matches


def literal_arguments(source: str, methods: frozenset[str]) -> list[tuple[str, str]]:
    """Each call ``x.name('text')`` of one of ``methods`` with one string literal: the name
    and the text (none when the source is outside what this module tokenizes)."""
    try:
        tokens = _tokens(source)
    except Unsupported:
        return []
    return [
        (name, text)
        for dot, (kind, name), paren, (lit, text), close in zip(
            tokens, tokens[1:], tokens[2:], tokens[3:], tokens[4:], strict=False
        )
        if dot == ("op", ".")
        and kind == "ident"
        and name in methods
        and paren == ("op", "(")
        and lit == "lit"
        and type(text) is str
        and close == ("op", ")")
    ]


def compile_fast(source: str) -> Node:
    """Closures for ``source``, or ``Unsupported`` when it leaves the fast subset. Call
    ``celshape.check_shape`` first: it bounds the recursion this parser needs."""
    return _Parser(source).parse()
