"""JSON for the hot path, straight from CPython's C accelerator `_json`.

`import json` costs ~6 ms here, mostly `re` and `enum`, which json's pure-Python layer
needs only for the cases the C scanner and encoder already handle. `state`, `start`,
`kill` and `delete` run on every container start, so they read and write JSON through
this module instead; the output is what `json.dumps` produces.
"""

import _json

_WHITESPACE = " \t\n\r"


class _DecodeContext:
    """The attributes `_json.make_scanner` reads (those of json.JSONDecoder)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict = {}

    @staticmethod
    def parse_constant(name: str) -> float:
        raise ValueError(f"invalid JSON constant {name}")  # NaN/Infinity are not JSON


_scan = _json.make_scanner(_DecodeContext())
_encode = _json.make_encoder(
    None, None, _json.encode_basestring_ascii, None, ": ", ", ", False, False, False
)
_encode_compact = _json.make_encoder(
    None, None, _json.encode_basestring_ascii, None, ":", ",", False, False, False
)
_encode_canonical = _json.make_encoder(
    None, None, _json.encode_basestring_ascii, None, ":", ",", True, False, False
)


def loads(text: str | bytes) -> object:
    """Parse one JSON document; ValueError (a json.JSONDecodeError) when it is not."""
    if isinstance(text, bytes):
        text = text.decode()
    idx = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, idx)
    except (StopIteration, SystemError, ValueError):
        return _slow_loads(text)
    if text[end:].strip(_WHITESPACE):
        return _slow_loads(text)
    return value


class TooDeep(ValueError):
    """A document nested deeper than the caller's bound (loads_bounded)."""


def loads_bounded(text: str, max_depth: int) -> object:
    """loads(), refusing (TooDeep) a document with more than max_depth nested arrays or
    objects (the document itself is level 1): an input nested 100,000 levels deep must
    end in one clear error, not in RecursionError in the scanner or in whatever walks
    the value next (a validator, the repr in an error message).

    The C scanner stops such an input at the interpreter's recursion limit; the exact
    bound is then checked by an iterative walk over the containers (~70 us for a 14 KB
    config with a seccomp profile). Lowering the recursion limit around the scanner
    would be free but not exact: every C-to-Python transition on the caller's stack
    counts against it too, so the bound would depend on who calls."""
    try:
        value = loads(text)
    except RecursionError:
        raise TooDeep(f"nested deeper than {max_depth} levels") from None
    if _depth_exceeds(value, max_depth):
        raise TooDeep(f"nested deeper than {max_depth} levels")
    return value


def _depth_exceeds(value: object, max_depth: int) -> bool:
    """Does value nest more than max_depth arrays/objects? Only containers are pushed."""
    if type(value) is not dict and type(value) is not list:
        return False
    stack = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        if depth > max_depth:
            return True
        for child in node.values() if type(node) is dict else node:
            if type(child) is dict or type(child) is list:
                push((child, depth + 1))
    return False


def _slow_loads(text: str) -> object:
    """Invalid input: let the json module word the error (the C scanner can only raise
    json.JSONDecodeError once json.decoder is imported; before that it fails oddly)."""
    import json

    return json.loads(text, parse_constant=_DecodeContext.parse_constant)


def dumps(value: object, compact: bool = False) -> str:
    """Like json.dumps(value) (or with separators=(",", ":") when compact)."""
    return "".join((_encode_compact if compact else _encode)(value, 0))


def dumps_canonical(value: object) -> str:
    """One spelling per value (keys sorted, compact, ASCII; true and 1, 1 and 1.0 told
    apart): what a hash of a parsed document is taken over (the seccomp filter cache)."""
    return "".join(_encode_canonical(value, 0))


def dumps_indent(value: object, indent: int = 2, level: int = 0) -> str:
    """Like json.dumps(value, indent=indent): the form `state` prints."""
    if isinstance(value, dict) and value:
        pad, inner = " " * (indent * level), " " * (indent * (level + 1))
        items = [
            f"{inner}{_json.encode_basestring_ascii(str(k))}: {dumps_indent(v, indent, level + 1)}"
            for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list) and value:
        pad, inner = " " * (indent * level), " " * (indent * (level + 1))
        items = [inner + dumps_indent(v, indent, level + 1) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return dumps(value)
