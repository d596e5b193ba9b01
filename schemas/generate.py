#!/usr/bin/env python3
"""Generate ociruntime/_config_validator.py from the JSON Schemas in this directory.

Why a generator: `create` validates config.json on every container start, and importing
jsonschema alone costs more than runc's whole `create`. The generated module checks the same
draft-04 keywords with a handful of closures and imports nothing but `re`;
`ociruntime.validation` imports jsonschema only to word the error once this code has said
"invalid". Patterns are applied with `re.search`, exactly as jsonschema does, so the two
agree even on Python-specific corners (e.g. `$` matching before a final newline). That is
why we do not use fastjsonschema: it rewrites `$` to `\\Z` and its output imports
fastjsonschema at run time.

The output is declarative (one line per distinct schema node, built from the combinators in
PRELUDE) rather than one function per node: it is a fifth of the size, and Python compiles a
module without a cached .pyc on every import.

Only the keywords our schemas use are supported, and each only on a node whose "type" it
applies to; anything else is an error here, so a schema edit can never be silently ignored
by the fast path.

Usage: generate.py [--check]   (--check: exit 1 if the committed module is stale)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

SCHEMA_DIR = Path(__file__).resolve().parent
OUTPUT = SCHEMA_DIR.parent / "ociruntime" / "_config_validator.py"
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
        return self.constant("_RE", "re.compile(", [pystr(pattern)], ")")

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
            items = [pystr(e) for e in node["enum"]]
            args.append(f"enum={self.constant('_ENUM', '{', items, '}')}")
        return args

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
"""Dependency-free validators for ociruntime's JSON Schemas (draft-04 semantics).

Each `_vN` is a check (object -> bool) for one distinct schema node, built from the
combinators below; the verdicts match jsonschema's. `ociruntime.validation` runs the public
`is_valid_*` functions on every document and imports jsonschema only to explain a rejection,
which keeps jsonschema's ~70 ms import off the container start path.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    Check = Callable[[object], bool]

__all__ = [{public}]

_NO_LIMIT = float("inf")


def _anything(v: object) -> bool:
    return True


def _is_string(v: object) -> bool:
    return isinstance(v, str)


def _is_boolean(v: object) -> bool:
    return isinstance(v, bool)


def _is_null(v: object) -> bool:
    return v is None


def _string(pattern: re.Pattern | None = None, enum: set[str] | None = None) -> Check:
    """A string, in enum if given, containing a match of pattern if given (re.search)."""

    def check(v: object) -> bool:
        if not isinstance(v, str) or (enum is not None and v not in enum):
            return False
        return pattern is None or pattern.search(v) is not None

    return check


def _integer(low: float = -_NO_LIMIT, high: float = _NO_LIMIT) -> Check:
    """A draft-04 integer: a JSON number without fraction, so not 1.0 and not a bool."""

    def check(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and low <= v <= high

    return check


def _array(items: Check = _anything, min_items: int = 0) -> Check:
    def check(v: object) -> bool:
        if not isinstance(v, list) or len(v) < min_items:
            return False
        for x in v:
            if not items(x):
                return False
        return True

    return check


def _object(
    members: dict[str, Check] | None = None,
    required: tuple[str, ...] = (),
    patterns: tuple[tuple[re.Pattern, Check], ...] = (),
    extra: Check | None = _anything,
) -> Check:
    """properties/required/patternProperties/additionalProperties (None: no extra members)."""
    members = members or {{}}
    if patterns or extra is not _anything:
        return _object_general(members, required, patterns, extra)

    def check(v: object) -> bool:
        if not isinstance(v, dict):
            return False
        for k in required:
            if k not in v:
                return False
        for k, x in v.items():
            f = members.get(k)
            if f is not None and not f(x):
                return False
        return True

    return check


def _object_general(
    members: dict[str, Check],
    required: tuple[str, ...],
    patterns: tuple[tuple[re.Pattern, Check], ...],
    extra: Check | None,
) -> Check:
    def check(v: object) -> bool:
        if not isinstance(v, dict):
            return False
        for k in required:
            if k not in v:
                return False
        for k, x in v.items():
            f = members.get(k)
            seen = f is not None
            if seen and not f(x):
                return False
            for regex, g in patterns:
                if regex.search(k):
                    seen = True
                    if not g(x):
                        return False
            if not seen and (extra is None or not extra(x)):
                return False
        return True

    return check


def _any_of(*checks: Check) -> Check:
    def check(v: object) -> bool:
        return any(c(v) for c in checks)

    return check


def _all_of(*checks: Check) -> Check:
    def check(v: object) -> bool:
        return all(c(v) for c in checks)

    return check
'''

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
    head = PRELUDE.format(digest=digest(docs), public=public).rstrip("\n")
    body = "\n".join(emitter.statements)
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
