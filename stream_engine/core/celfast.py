"""A fast path for the common subset of CEL: expressions compiled to Python closures.

The ``cel`` package (Rust) converts every value it is handed into CEL values on each call,
which costs more than evaluating a small expression. Rule conditions are mostly small:
field access, comparisons, boolean logic, arithmetic, ``in``, ``has()``, a few functions. This
module compiles that subset into closures over the original Python values, with the ``cel``
package's semantics (no implicit numeric coercion, int64 overflow, error absorption by
``&&``/``||``...). Anything outside the subset raises ``Unsupported`` at compile time and the
caller uses the ``cel`` package; a differential test keeps both in agreement.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

INT_MIN, INT_MAX = -(2**63), 2**63 - 1

Env = dict[str, Any]
Node = Callable[[Env], Any]


class Unsupported(Exception):
    """The expression uses CEL outside the fast subset; use the full implementation."""


class CelError(Exception):
    """A CEL evaluation error (no such key, no such overload, overflow...)."""


class NoSuchKey(CelError):
    """A field or map key that is not there."""

    def __init__(self, key: Any) -> None:
        super().__init__(f"no such key {key!r} (guard it with has())")
        self.key = key


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<double>(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)
  | (?P<hex>0[xX][0-9a-fA-F]+)(?P<hexu>[uU])?
  | (?P<int>\d+)(?P<intu>[uU])?
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
_RESERVED = {
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
            return chr(int(code[1:], 16))
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
            elif text in _RESERVED:
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


def _kind(value: Any) -> str:
    """The CEL type name of a Python value (as the ``cel`` package maps them)."""
    cls = type(value)
    if cls is int:
        return "int" if INT_MIN <= value <= INT_MAX else "double"
    kind = _KINDS.get(cls)
    if kind is not None:
        return kind
    if value is True or value is False:
        return "bool"
    if isinstance(value, int):
        return "int" if INT_MIN <= value <= INT_MAX else "double"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, dict):
        return "map"
    raise Unsupported(f"value of type {type(value).__name__}")


def _num(value: Any) -> Any:
    """Ints beyond int64 become doubles, as the ``cel`` package converts them."""
    if type(value) is int and not INT_MIN <= value <= INT_MAX:
        return float(value)
    return value


def _overload(op: str, left: Any, right: Any = None) -> CelError:
    kinds = _kind(left) if right is None else f"{_kind(left)} {op} {_kind(right)}"
    return CelError(f"no such overload: {op} on {kinds}")


def _check_int(value: int, op: str) -> int:
    if not INT_MIN <= value <= INT_MAX:
        raise CelError(f"arithmetic overflow in '{op}'")
    return value


def _add(a: Any, b: Any) -> Any:
    if type(a) is str and type(b) is str:
        return a + b
    if type(a) is float and type(b) is float:
        return a + b
    ka, kb = _kind(a), _kind(b)
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
    remainder = abs(a) % abs(b)
    return remainder if a >= 0 else -remainder


def _equal(a: Any, b: Any) -> bool:
    if type(a) is type(b) and type(a) in _PLAIN:
        return bool(a == b)
    ka, kb = _kind(a), _kind(b)
    if ka in ("int", "double") and kb in ("int", "double"):
        return bool(_num(a) == _num(b))
    if ka != kb:
        return False
    if ka == "list":
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if ka == "map":
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return bool(a == b)


_PLAIN = (str, bool, type(None))


def _order(op: str, a: Any, b: Any) -> bool:
    ka, kb = _kind(a), _kind(b)
    numeric = ka in ("int", "double") and kb in ("int", "double")
    if not numeric and (ka != kb or ka not in ("string", "bool")):
        raise _overload(op, a, b)
    if ka == "string":
        a, b = a.encode(), b.encode()
    else:
        a, b = _num(a), _num(b)
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    return bool(a >= b)


def _in(item: Any, container: Any) -> bool:
    kind = _kind(container)
    if kind == "list":
        return any(_equal(item, element) for element in container)
    if kind == "map":
        _kind(item)
        return any(_equal(item, key) for key in container)
    raise _overload("in", item, container)


def _select(value: Any, field: str) -> Any:
    if not isinstance(value, dict):
        raise CelError(f"cannot select field {field!r} from {_kind(value)}")
    if field not in value:
        raise NoSuchKey(field)
    return value[field]


def _index(value: Any, key: Any) -> Any:
    kind = _kind(value)
    if kind == "list":
        if _kind(key) != "int":
            raise _overload("[]", value, key)
        if not 0 <= key < len(value):
            raise CelError(f"index out of bounds: {key}")
        return value[key]
    if kind == "map":
        for candidate in value:
            if _equal(candidate, key):
                return value[candidate]
        raise NoSuchKey(key)
    raise _overload("[]", value, key)


def _bool(value: Any, op: str) -> bool:
    if value is True or value is False:
        return value
    raise _overload(op, value)


_FLOAT_TEXT = re.compile(
    r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|inf|infinity|nan)", re.IGNORECASE
)
_INT_TEXT = re.compile(r"[+-]?\d+")


def _to_int(value: Any) -> int:
    kind = _kind(value)
    if kind == "int":
        return int(value)
    if kind == "double":
        value = _num(value)
        if math.isnan(value) or not INT_MIN <= value < 2.0**63:
            raise CelError("int() overflow")
        return int(value)
    if kind == "string":
        if not _INT_TEXT.fullmatch(value):
            raise CelError("int() string parse error")
        return _check_int(int(value), "int")
    raise _overload("int", value)


def _to_double(value: Any) -> float:
    kind = _kind(value)
    if kind in ("int", "double"):
        return float(value)
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
    if kind == "string":
        return str(value)
    if kind == "int":
        return str(value)
    if kind == "double":
        return _double_text(float(value))
    raise _overload("string", value)


def _size(value: Any) -> int:
    kind = _kind(value)
    if kind == "string":
        return len(value.encode())
    if kind in ("list", "map"):
        return len(value)
    raise _overload("size", value)


def _strings(name: str, target: Any, arg: Any) -> tuple[str, str]:
    if _kind(target) != "string" or _kind(arg) != "string":
        raise _overload(name, target, arg)
    return target, arg


_FUNCTIONS: dict[str, Callable[..., Any]] = {
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


# -- parser: tokens to closures ------------------------------------------------------------


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = _tokens(source)
        self.pos = 0

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
        return node

    def conditional(self) -> Node:
        cond = self.logical_or()
        if not self.accept("?"):
            return cond
        yes = self.logical_or()
        self.expect(":")
        no = self.conditional()

        def ternary(env: Env) -> Any:
            return yes(env) if _bool(cond(env), "_?_:_") else no(env)

        return ternary

    def logical_or(self) -> Node:
        node = self.logical_and()
        while self.accept("||"):
            node = _logic(node, self.logical_and(), short=True)
        return node

    def logical_and(self) -> Node:
        node = self.relation()
        while self.accept("&&"):
            node = _logic(node, self.relation(), short=False)
        return node

    def relation(self) -> Node:
        node = self.addition()
        while True:
            kind, op = self.peek()
            if kind != "op" or op not in ("<", "<=", ">", ">=", "==", "!=", "in"):
                return node
            self.take()
            node = _relation(op, node, self.addition())

    def addition(self) -> Node:
        node = self.multiplication()
        while True:
            if self.accept("+"):
                node = _binary(_add, node, self.multiplication())
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
        if self.accept("!"):
            inner = self.unary()
            return lambda env: not _bool(inner(env), "!_")
        if self.accept("-"):
            if self.peek()[0] == "int":
                value = -self.take()[1]
                if value < INT_MIN:
                    raise Unsupported("int literal out of range")
                return self.member(_const(value))
            inner = self.unary()
            return _negate(inner)
        return self.member(self.primary())

    def member(self, node: Node) -> Node:
        while True:
            if self.accept("."):
                kind, name = self.take()
                if kind != "ident":
                    raise Unsupported("field name expected")
                if self.accept("("):
                    node = self.method(node, name, self.arguments())
                else:
                    node = _selector(node, name)
            elif self.accept("["):
                key = self.conditional()
                self.expect("]")
                node = _binary(_index, node, key)
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

    def method(self, target: Node, name: str, args: list[Node]) -> Node:
        if name == "size" and not args:
            return lambda env: _size(target(env))
        if name in _METHODS and len(args) == 1:
            function = _METHODS[name]
            arg = args[0]
            return lambda env: function(target(env), arg(env))
        if name == "matches" and len(args) == 1:
            return _matches(target, args[0])
        raise Unsupported(f"method {name}")

    def primary(self) -> Node:
        kind, value = self.take()
        if kind in ("lit", "int"):
            if kind == "int" and value > INT_MAX:
                raise Unsupported("int literal out of range")
            return _const(value)
        if kind == "ident":
            if self.accept("("):
                return self.call(value)
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
        args = self.arguments()
        if name in _FUNCTIONS and len(args) == 1:
            function = _FUNCTIONS[name]
            arg = args[0]
            return lambda env: function(arg(env))
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
                node = _binary(_index, node, key)
            else:
                break
        self.expect(")")
        if holder is None:
            raise Unsupported("has() needs a field selection")
        found = holder
        return lambda env: _has(found(env), field)


def _const(value: Any) -> Node:
    def constant(env: Env) -> Any:
        return value

    constant.constant = True  # type: ignore[attr-defined]
    return constant


def _variable(name: str) -> Node:
    def variable(env: Env) -> Any:
        try:
            return _num(env[name])
        except KeyError:
            raise CelError(f"undefined variable: {name}") from None

    return variable


def _selector(node: Node, field: str) -> Node:
    return lambda env: _num(_select(node(env), field))


def _has(value: Any, field: str) -> bool:
    if not isinstance(value, dict):
        raise CelError(f"has() on {_kind(value)}")
    return field in value


def _negate(inner: Node) -> Node:
    def negate(env: Env) -> Any:
        value = inner(env)
        kind = _kind(value)
        if kind == "int":
            return _check_int(-value, "neg")
        if kind == "double":
            return -_num(value)
        if kind == "bool":
            return not value  # the cel package negates a bool into its logical not
        raise _overload("-_", value)

    return negate


def _binary(function: Callable[[Any, Any], Any], left: Node, right: Node) -> Node:
    return lambda env: function(left(env), right(env))


def _relation(op: str, left: Node, right: Node) -> Node:
    if op == "==":
        return lambda env: _equal(left(env), right(env))
    if op == "!=":
        return lambda env: not _equal(left(env), right(env))
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
        return lambda env: _in(left(env), right(env))
    return lambda env: _order(op, left(env), right(env))


def _logic(left: Node, right: Node, short: bool) -> Node:
    """``||`` (short=True) and ``&&``: a decisive value on either side wins over an error."""
    name = "_||_" if short else "_&&_"
    decisive: bool = short

    def logic(env: Env) -> bool:
        error: Exception | None = None
        try:
            first = left(env)
            if first is short:
                return decisive
            if first is not (not short):
                error = _overload(name, first)
        except CelError as exc:
            error = exc
        second = right(env) if error is None else _try(right, env)
        if second is short:
            return decisive
        if error is not None:
            raise error
        if second is not (not short):
            raise _overload(name, second)
        return not short

    return logic


def _try(node: Node, env: Env) -> Any:
    try:
        return node(env)
    except CelError:
        return None


def _matches(target: Node, pattern: Node) -> Node:
    if not getattr(pattern, "constant", False):
        raise Unsupported("matches() with a computed pattern")
    text = pattern(Env())
    if not isinstance(text, str):
        raise Unsupported("matches() pattern must be a string")
    try:
        compiled = re.compile(text)
    except re.error as exc:
        raise Unsupported(f"pattern {text!r}: {exc}") from None
    if any(token in text for token in ("(?=", "(?!", "(?<", "\\Z", "\\A", "(?P")):
        raise Unsupported("pattern syntax beyond RE2")

    def matches(env: Env) -> bool:
        value = target(env)
        if _kind(value) != "string":
            raise _overload("matches", value)
        return compiled.search(value) is not None

    return matches


def compile_fast(source: str) -> Node:
    """Closures for ``source``, or ``Unsupported`` when it leaves the fast subset."""
    return _Parser(source).parse()
