#!/usr/bin/env python3
"""Generate ociruntime/container/_config_validator.py from the JSON Schemas in this directory.

Why a generator: `create` validates config.json on every container start, and importing
jsonschema alone costs more than runc's whole `create`. The generated module checks the same
draft-04 keywords with a handful of closures and imports nothing at all;
`ociruntime.container.validation` imports jsonschema only to word the error once this code has said
"invalid". A "pattern" must give exactly `re.search`'s verdict, as in jsonschema, even on
Python-specific corners (e.g. `$` matching before a final newline). That is why we do not
use fastjsonschema: it rewrites `$` to `\\Z` and its output imports fastjsonschema at run
time.

Patterns without `re`: importing re (with enum and functools) was the largest import left on
the `create` path, and our patterns are simple. compile_pattern() turns a pattern made of
anchors, literal characters, character classes and the quantifiers `*`, `+`, `?` into a
`_Seq`, a list of steps the generated module matches greedily, without backtracking; it
does so only when that is provably exact (see greedy_is_exact). Any other pattern becomes a
`_Lazy`, which imports re and compiles the pattern the first time it is used.

The output is declarative (one line per distinct schema node, built from the combinators in
ociruntime/container/schema_runtime.py, which it imports) rather than one function per
node: it is a fifth of the size, and Python compiles a module without a cached .pyc on
every import.

Only the keywords our schemas use are supported, and each only on a node whose "type" it
applies to; anything else is an error here, so a schema edit can never be silently ignored
by the fast path.

Usage: generate.py [--check]   (--check: exit 1 if the committed module is stale)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import string
import sys
from pathlib import Path
from typing import NamedTuple

SCHEMA_DIR = Path(__file__).resolve().parent
OUTPUT = SCHEMA_DIR.parent / "ociruntime" / "container" / "_config_validator.py"
#: public function name suffix -> schema file it validates against
ENTRY_POINTS = {"config": "config.json", "state": "state.json", "features": "features.json"}
LINE_LENGTH = 100
LABEL_MAX = 80

ANNOTATIONS = frozenset({"$schema", "description", "title", "definitions"})
#: keywords each draft-04 "type" can usefully carry ("" = any type)
KEYWORDS = {
    "": {"type", "anyOf", "allOf"},
    "string": {"enum", "pattern"},
    "integer": {"minimum", "maximum"},
    "array": {"items", "minItems"},
    "object": {"required", "properties", "patternProperties", "additionalProperties"},
    "boolean": set(),
    "null": set(),
}
ALL_KEYWORDS = frozenset().union(*KEYWORDS.values())


class SchemaError(ValueError):
    """A schema uses something the generator does not support (so it must not guess)."""


def load_schemas(directory: Path = SCHEMA_DIR) -> dict[str, dict]:
    """All schema files by file name, which is also the URI our $refs use."""
    return {p.name: json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))}


class Expander:
    """Inlines every $ref so that each node can be compiled on its own."""

    def __init__(self, docs: dict[str, dict]) -> None:
        self.docs = docs

    def resolve(self, ref: str, base: str) -> tuple[dict, str, str]:
        """Return (node, file, label) for a `file.json#/json/pointer` reference."""
        file, _, fragment = ref.partition("#")
        file = file or base
        if file not in self.docs:
            raise SchemaError(f"{base}: $ref to unknown file {ref!r}")
        if fragment and not fragment.startswith("/"):
            raise SchemaError(f"{base}: $ref fragment is not a JSON pointer: {ref!r}")
        node = self.docs[file]
        for part in fragment.split("/")[1:]:
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node, file, f"{file}#{fragment}"

    def expand(self, node: object, base: str, label: str) -> dict:
        """Return a ref-free copy of node holding only validation keywords (plus its label)."""
        if not isinstance(node, dict):
            raise SchemaError(f"{label}: a schema must be an object, got {node!r}")
        if "$ref" in node:  # draft-04: siblings of $ref are ignored
            target, file, target_label = self.resolve(node["$ref"], base)
            return self.expand(target, file, target_label)
        unknown = set(node) - ANNOTATIONS - ALL_KEYWORDS
        if unknown:
            raise SchemaError(f"{label}: unsupported keyword(s) {sorted(unknown)}")
        kind = node.get("type", "string" if "enum" in node else "")
        if kind not in KEYWORDS:
            raise SchemaError(f"{label}: unsupported type {kind!r}")
        useless = set(node) - ANNOTATIONS - KEYWORDS[""] - KEYWORDS[kind]
        if useless:
            raise SchemaError(f"{label}: {sorted(useless)} need a matching type, not {kind!r}")
        out: dict = {"$label": label[:LABEL_MAX], "type": kind}
        for key in sorted(set(node) - ANNOTATIONS - {"type"}):
            out[key] = self.expand_keyword(key, node[key], base, label)
        return out

    def expand_keyword(self, key: str, value: object, base: str, label: str) -> object:
        """Expand the subschemas held by one keyword; plain values pass through checked."""
        if key in ("properties", "patternProperties"):
            sep = "." if key == "properties" else "~"
            return {k: self.expand(s, base, f"{label}{sep}{k}") for k, s in value.items()}
        if key == "items":
            if not isinstance(value, dict):
                raise SchemaError(f"{label}: only the single-schema form of items is supported")
            return self.expand(value, base, f"{label}[]")
        if key == "additionalProperties" and not isinstance(value, bool):
            return self.expand(value, base, f"{label}.*")
        if key in ("anyOf", "allOf"):
            return [self.expand(s, base, f"{label}|{key}{i}") for i, s in enumerate(value)]
        if key == "enum" and not all(isinstance(e, str) for e in value):
            raise SchemaError(f"{label}: only string enums are supported")
        return value


# --------------------------------------------------------------------------- patterns

#: characters with a meaning outside a class; as literals they must be escaped (`\.`)
SPECIAL = frozenset(".^$*+?{}[]()|\\")
#: the escapes compile_pattern knows besides `\` + ASCII punctuation (which is that character)
ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "a": "\a"}
QUANTIFIERS = {"*": (0, None), "+": (1, None), "?": (0, 1)}


class Unsupported(ValueError):
    """A pattern outside the grammar _Seq can decide exactly: it is left to re (lazily)."""


class CharSet(NamedTuple):
    """The characters in chars, or (negated) every character but those."""

    chars: frozenset[str]
    negated: bool = False

    def overlaps(self, other: CharSet) -> bool:
        """Whether some character is in both (there are always characters outside both)."""
        if self.negated and other.negated:
            return True
        if self.negated or other.negated:
            included, excluded = (other, self) if self.negated else (self, other)
            return not included.chars <= excluded.chars
        return not self.chars.isdisjoint(other.chars)


class Step(NamedTuple):
    """low to high (None: no limit) characters of charset."""

    charset: CharSet
    low: int
    high: int | None


class Plan(NamedTuple):
    """A pattern as `^`? steps `$`?: what a _Seq matches."""

    start: bool
    steps: tuple[Step, ...]
    end: bool


def parse_pattern(pattern: str) -> Plan:
    r"""The pattern in _Seq's grammar, or Unsupported.

    Grammar: `^`? (atom quantifier?)* `$`? where an atom is a literal character, an escaped
    one (`\.`, `\n`...), `.` or a class `[...]`/`[^...]` of characters and ranges, and a
    quantifier is `*`, `+` or `?`. Groups, alternatives, `{m,n}`, lazy or possessive
    quantifiers, `\d`-like classes, `\b`-like assertions and back references are not.
    """
    start = pattern.startswith("^")
    end = pattern.endswith("$") and not _escaped_at(pattern, len(pattern) - 1)
    body = pattern[int(start) : len(pattern) - int(end)]
    steps = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "[":
            charset, i = _parse_class(body, i + 1)
        elif c == ".":
            charset, i = CharSet(frozenset("\n"), negated=True), i + 1
        elif c == "\\":
            char, i = _parse_escape(body, i + 1)
            charset = CharSet(frozenset(char))
        elif c in SPECIAL:
            raise Unsupported(f"{c!r} at {i}")
        else:
            charset, i = CharSet(frozenset(c)), i + 1
        low = high = 1
        if i < len(body) and body[i] in QUANTIFIERS:
            low, high = QUANTIFIERS[body[i]]
            i += 1
            if i < len(body) and body[i] in "*+?{":
                raise Unsupported(f"lazy, possessive or repeated quantifier at {i}")
        steps.append(Step(charset, low, high))
    return Plan(start, tuple(steps), end)


def _escaped_at(pattern: str, i: int) -> bool:
    """Whether pattern[i] is escaped (preceded by an odd number of backslashes)."""
    backslashes = len(pattern[:i]) - len(pattern[:i].rstrip("\\"))
    return backslashes % 2 == 1


def _parse_escape(pattern: str, i: int) -> tuple[str, int]:
    """The character a backslash and pattern[i] stand for (in or out of a class); the next index."""
    if i >= len(pattern):
        raise Unsupported("trailing backslash")
    c = pattern[i]
    if c in ESCAPES:
        return ESCAPES[c], i + 1
    if c in string.punctuation or c == " ":
        return c, i + 1
    raise Unsupported(f"escape \\{c}")


def _parse_class(pattern: str, i: int) -> tuple[CharSet, int]:
    """The class whose text starts at pattern[i] (after `[`); the index after its `]`.

    Follows re's parser: `]` first is a literal, `-` is a literal first or last, and
    otherwise a range. What re warns about (a possible nested set or set operation) is
    Unsupported.
    """
    negated = pattern.startswith("^", i)
    i += negated
    chars: set[str] = set()
    first = True
    while True:
        if i >= len(pattern):
            raise Unsupported("unterminated class")
        if pattern[i] == "]" and not first:
            return CharSet(frozenset(chars), negated), i + 1
        if pattern[i] == "[" or pattern[i : i + 2] in ("--", "&&", "~~", "||"):
            raise Unsupported(f"possible nested set or set operation at {i}")
        low, i = _class_char(pattern, i)
        if pattern.startswith("-", i) and not pattern.startswith("-]", i):
            high, i = _class_char(pattern, i + 1)
            if high < low:
                raise Unsupported(f"bad range {low!r}-{high!r}")
            chars.update(chr(c) for c in range(ord(low), ord(high) + 1))
        else:
            chars.add(low)
        first = False


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    if i >= len(pattern):
        raise Unsupported("unterminated class")
    if pattern[i] == "\\":
        return _parse_escape(pattern, i + 1)
    return pattern[i], i + 1


def greedy_is_exact(steps: tuple[Step, ...]) -> None:
    """Raise Unsupported unless matching steps greedily finds a match whenever one exists.

    Required: no character a repeated step (low < high) could take is one the steps after it
    could take next, i.e. those up to and including the first that must take a character.
    Then at every step of a match, the greedy matcher has taken the same characters: if it
    took more, the first extra one is one the match took with a later step, a character in
    both sets. (Or the match took it with none, ending before it: without `$` the greedy
    match ends too, as every later step may take nothing; with `$` that character is the
    final newline before which `$` matched, and `$` matches after it as well.)
    """
    for i, step in enumerate(steps):
        if step.low == step.high:
            continue
        for later in steps[i + 1 :]:
            if step.charset.overlaps(later.charset):
                raise Unsupported(f"repeated step {i} overlaps a later one: needs backtracking")
            if later.low:
                break


def compile_pattern(pattern: str) -> tuple[str, list[str]]:
    """(callee, arguments): the call, in the generated module, deciding re.search(pattern, s).

    `_Seq(...)` when parse_pattern and greedy_is_exact accept the pattern, else `_Lazy(...)`.
    """
    try:
        re.compile(pattern)
    except re.error as e:
        raise SchemaError(f"invalid pattern {pattern!r}: {e}") from None
    try:
        plan = parse_pattern(pattern)
        greedy_is_exact(plan.steps)
        steps = [_render_step(*s) for s in _merge_literals(plan.steps)]
    except Unsupported:
        return "_Lazy", [pystr(pattern)]
    flags = ["start=True"] * plan.start + ["end=True"] * plan.end
    return "_Seq", [pystr(pattern), *steps, *flags]


def _merge_literals(steps: tuple[Step, ...]) -> list[tuple[str, str, int, int | None]]:
    """(kind, chars, low, high) for each run of single characters and each other step."""
    out: list[tuple[str, str, int, int | None]] = []
    for step in steps:
        cs = step.charset
        if not cs.negated and len(cs.chars) == 1 and step.low == step.high == 1:
            (char,) = cs.chars
            if out and out[-1][0] == "_LITERAL":
                out[-1] = ("_LITERAL", out[-1][1] + char, 1, 1)
            else:
                out.append(("_LITERAL", char, 1, 1))
        else:
            kind = "_NOT_IN" if cs.negated else "_IN"
            out.append((kind, "".join(sorted(cs.chars)), step.low, step.high))
    return out


def _render_step(kind: str, chars: str, low: int, high: int | None) -> str:
    text = f"({kind}, {pystr(chars)}, {low}, {'_MANY' if high is None else high})"
    if len(text) + len("    ,") > LINE_LENGTH:  # a step per line must fit: leave huge sets to re
        raise Unsupported(f"character set too large to inline: {chars!r}")
    return text


def canonical(node: object) -> str:
    """Structural identity of a node: equal schemas share one generated check."""

    def strip(n: object) -> object:
        if isinstance(n, dict):
            return {k: strip(v) for k, v in n.items() if k != "$label"}
        if isinstance(n, list):
            return [strip(v) for v in n]
        return n

    return json.dumps(strip(node), sort_keys=True)


def pystr(text: str) -> str:
    """A double-quoted Python literal for text (JSON string syntax is valid Python)."""
    return json.dumps(text)


def pytuple(items: list[str]) -> str:
    """A tuple literal without a magic trailing comma (which would make ruff explode it)."""
    return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"


def collection(head: str, opening: str, items: list[str], closing: str) -> str:
    """A literal laid out as `ruff format` would: one line if it fits, else one item a line."""
    flat = f"{head}{opening}{', '.join(items)}{closing}"
    if len(flat) <= LINE_LENGTH:
        return flat
    return f"{head}{opening}\n" + "".join(f"    {i},\n" for i in items) + closing


class Emitter:
    """Turns expanded schema nodes into module-level statements, children first."""

    TYPE_ONLY = {
        "": "_anything",
        "string": "_is_string",
        "integer": "_integer()",
        "array": "_array()",
        "object": "_object()",
        "boolean": "_is_boolean",
        "null": "_is_null",
    }

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.statements: list[str] = []
        self.constants: dict[str, str] = {}  # literal (as JSON) -> name

    def constant(self, prefix: str, opening: str, items: list[str], closing: str) -> str:
        """Name of a module-level constant, shared between identical literals."""
        key = json.dumps([opening, items, closing])
        if key not in self.constants:
            name = f"{prefix}{len(self.constants)}"
            self.constants[key] = name
            self.statements.append(collection(f"{name} = ", opening, items, closing))
        return self.constants[key]

    def regex(self, pattern: str) -> str:
        """Name of the module-level matcher (a _Seq or _Lazy) for pattern."""
        callee, args = compile_pattern(pattern)
        return self.constant("_RE", f"{callee}(", args, ")")

    def check(self, node: dict) -> str:
        """Name of the check for node, emitting it (after its children) if new."""
        key = canonical(node)
        if key not in self.names:
            parts = [self.typed(node)]
            parts += [self.combined("_any_of", node["anyOf"])] if "anyOf" in node else []
            parts += [self.check(sub) for sub in node.get("allOf", [])]
            parts = [p for p in parts if p != "_anything"] or ["_anything"]
            expr = parts[0] if len(parts) == 1 else self.call("_all_of", parts)
            name = f"_v{len(self.names)}"
            self.names[key] = name
            self.statements.append(f"# {node['$label']}\n{name} = {expr}")
        return self.names[key]

    def combined(self, combinator: str, subs: list[dict]) -> str:
        return self.call(combinator, [self.check(s) for s in subs])

    @staticmethod
    def call(func: str, args: list[str]) -> str:
        return collection("", f"{func}(", args, ")")

    def typed(self, node: dict) -> str:
        """The expression checking the node's type and its type-specific keywords."""
        kind = node["type"]
        args = getattr(self, f"args_{kind}", lambda n: [])(node)
        return self.call(f"_{kind}", args) if args else self.TYPE_ONLY[kind]

    def args_string(self, node: dict) -> list[str]:
        args = []
        if "pattern" in node:
            args.append(f"pattern={self.regex(node['pattern'])}")
        if "enum" in node:
            args.append(f"enum={self.enum(node['enum'])}")
        return args

    def enum(self, values: list[str]) -> str:
        """A set literal, or where that would take a line a value and every value is a
        word (no whitespace), _words() of one text wrapped to the line length: data, not
        a column of look-alike lines."""
        items = [pystr(e) for e in values]
        literal = collection("", "{", items, "}")
        if "\n" not in literal or not all(e and len(e.split()) == 1 for e in values):
            return self.constant("_ENUM", "{", items, "}")
        chunks, line = [], ""
        for value in values:
            if line and len(pystr(f"{line} {value} ")) > LINE_LENGTH - 4:
                chunks.append(pystr(line + " "))
                line = value
            else:
                line = f"{line} {value}" if line else value
        chunks.append(pystr(line))
        key = json.dumps(["_words", chunks])
        if key not in self.constants:
            name = f"_ENUM{len(self.constants)}"
            self.constants[key] = name
            flat = f"{name} = _words({chunks[0]})"
            body = "".join(f"    {c}\n" for c in chunks)
            fits = len(chunks) == 1 and len(flat) <= LINE_LENGTH
            self.statements.append(flat if fits else f"{name} = _words(\n{body})")
        return self.constants[key]

    def args_integer(self, node: dict) -> list[str]:
        bounds = {"low": node.get("minimum"), "high": node.get("maximum")}
        return [f"{name}={value!r}" for name, value in bounds.items() if value is not None]

    def args_array(self, node: dict) -> list[str]:
        args = [f"items={self.check(node['items'])}"] if "items" in node else []
        return args + ([f"min_items={node['minItems']}"] if "minItems" in node else [])

    def args_object(self, node: dict) -> list[str]:
        args = []
        if node.get("properties"):
            members = [f"{pystr(k)}: {self.check(s)}" for k, s in node["properties"].items()]
            args.append(self.constant("_MEMBERS", "{", members, "}"))
        if node.get("required"):
            args.append(f"required={pytuple([pystr(k) for k in node['required']])}")
        if node.get("patternProperties"):
            pairs = []
            for pattern, sub in node["patternProperties"].items():
                pairs.append(pytuple([self.regex(pattern), self.check(sub)]))
            args.append(f"patterns={pytuple(pairs)}")
        extra = node.get("additionalProperties", True)
        if extra is not True:
            args.append(f"extra={'None' if extra is False else self.check(extra)}")
        return args


PRELUDE = '''\
# GENERATED by schemas/generate.py from schemas/*.json -- DO NOT EDIT.
# Regenerate: .venv/bin/python schemas/generate.py   (tests fail while this file is stale)
# schemas digest: {digest}
"""Validators for ociruntime's JSON Schemas: each `_vN` checks one distinct schema node
with the combinators of ociruntime.container.schema_runtime (see there, and schemas/
generate.py, why there is no jsonschema, and no re, on the container start path)."""

from __future__ import annotations

{imports}

__all__ = [{public}]
'''

#: name in the generated module -> name in ociruntime.container.schema_runtime
RUNTIME_NAMES = {
    "_IN": "IN",
    "_LITERAL": "LITERAL",
    "_MANY": "MANY",
    "_NOT_IN": "NOT_IN",
    "_Lazy": "Lazy",
    "_Seq": "Seq",
    "_all_of": "all_of",
    "_any_of": "any_of",
    "_anything": "anything",
    "_array": "array",
    "_integer": "integer",
    "_is_boolean": "is_boolean",
    "_is_null": "is_null",
    "_is_string": "is_string",
    "_object": "object_",
    "_string": "string",
    "_words": "words",
}


def runtime_imports(body: str) -> str:
    """The import of what the generated statements use from schema_runtime (an unused
    one would be a lint error), laid out as ruff's isort and format lay it out."""
    used = [n for n in RUNTIME_NAMES if re.search(rf"(?<![\w.]){n}\b", body)]
    names = [f"{RUNTIME_NAMES[n]} as {n}" for n in used]
    return collection("from ociruntime.container.schema_runtime import ", "(", names, ")")


PUBLIC = '''\
def is_valid_{name}(doc: object) -> bool:
    """Whether doc satisfies schemas/{file}."""
    return {check}(doc)
'''


def digest(docs: dict[str, dict]) -> str:
    """Hash of the schemas' content, so a reader can tell which schemas the code came from."""
    blob = json.dumps(docs, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def render(directory: Path = SCHEMA_DIR) -> str:
    """The full text of the generated module for the schemas in directory."""
    docs = load_schemas(directory)
    expander, emitter = Expander(docs), Emitter()
    checks = {}
    for name, file in ENTRY_POINTS.items():
        checks[name] = (file, emitter.check(expander.expand(docs[file], file, file + "#")))
    public = ", ".join(f'"is_valid_{name}"' for name in ENTRY_POINTS)
    body = "\n".join(emitter.statements)
    imports = runtime_imports(body)
    head = PRELUDE.format(digest=digest(docs), public=public, imports=imports).rstrip("\n")
    publics = [PUBLIC.format(name=n, file=f, check=c).rstrip("\n") for n, (f, c) in checks.items()]
    return "\n\n\n".join([head, body, *publics]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the output is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        stale = not OUTPUT.exists() or OUTPUT.read_text() != text
        print(f"{OUTPUT}: {'STALE' if stale else 'up to date'}")
        return 1 if stale else 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
