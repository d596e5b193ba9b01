"""Check config.json, state and features documents against ociruntime's JSON Schemas.

`create` calls check_config() on every container start, so the common case (a valid
document) must be cheap: it runs the generated, dependency-free validator in
`ociruntime.container._config_validator` and never imports jsonschema (whose import alone costs
~70 ms, more than runc's whole `create`). Only when that validator rejects a document do we
import jsonschema, re-validate against the schema files in `schemas/` and report its
best-matching error, so messages read exactly like jsonschema's.

The generated validator is built from the same schema files by `schemas/generate.py`;
tests/test_schemas.py checks that it is fresh and that both always agree.
"""

from __future__ import annotations

from ociruntime.container import _config_validator as _fast
from ociruntime.errors import cut, field_message, pointer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import NoReturn

    from jsonschema.exceptions import ValidationError
    from referencing import Registry

__all__ = [
    "ConfigInvalid",
    "FeaturesInvalid",
    "StateInvalid",
    "check_config",
    "check_features",
    "check_state",
    "schema_dir",
]


class ConfigInvalid(Exception):
    """A document does not satisfy its schema.

    pointer is the JSON pointer of the offending value ("/" for the document itself) and
    reason is jsonschema's message for it, e.g. "[] should be non-empty".
    """

    #: how the document is named in messages
    document = "config.json"

    def __init__(self, pointer: str, reason: str) -> None:
        super().__init__(pointer, reason)
        self.pointer = pointer
        self.reason = reason

    def __str__(self) -> str:
        # jsonschema's reason quotes the whole offending value (repr): cut, as every error
        return cut(field_message(self.pointer, self.reason, self.document))


class StateInvalid(ConfigInvalid):
    """The state document (output of `state`) does not satisfy schemas/state.json."""

    document = "state"


class FeaturesInvalid(ConfigInvalid):
    """The features document (output of `features`) does not satisfy schemas/features.json."""

    document = "features"


def schema_dir() -> Path:
    """The schemas/ directory next to the package (the editable install keeps it there)."""
    from pathlib import Path  # deferred: only the slow path needs it

    return Path(__file__).parents[2] / "schemas"


def check_config(doc: object) -> None:
    """Raise ConfigInvalid unless doc (a parsed config.json) satisfies schemas/config.json."""
    if not _fast.is_valid_config(doc):
        _explain(doc, "config.json", ConfigInvalid)


def check_state(doc: object) -> None:
    """Raise StateInvalid unless doc satisfies schemas/state.json."""
    if not _fast.is_valid_state(doc):
        _explain(doc, "state.json", StateInvalid)


def check_features(doc: object) -> None:
    """Raise FeaturesInvalid unless doc satisfies schemas/features.json."""
    if not _fast.is_valid_features(doc):
        _explain(doc, "features.json", FeaturesInvalid)


#: How many of jsonschema's errors best_match weighs. Each error costs ~15 us and a
#: 4 MiB config.json of wrong-typed array items has a million of them (15 s); the first
#: hundred always include one that names the field at fault.
_ERRORS_WEIGHED = 100


def _explain(doc: object, schema: str, error: Callable[[str, str], ConfigInvalid]) -> NoReturn:
    """Raise error() with jsonschema's best-matching message for an already rejected doc."""
    from itertools import islice

    from jsonschema import Draft4Validator
    from jsonschema.exceptions import best_match

    validator = Draft4Validator({"$ref": schema}, registry=_registry())
    best = best_match(islice(validator.iter_errors(doc), _ERRORS_WEIGHED))
    if best is None:
        # The two validators disagree: refuse the document rather than guess, and say why.
        raise error("/", "rejected by our compiled validator but not by jsonschema")
    raise error(_pointer(best), best.message)


def _pointer(error: ValidationError) -> str:
    """RFC 6901 pointer to the instance the error is about; "/" for the whole document."""
    return pointer(*error.absolute_path) or "/"


_REGISTRY: Registry | None = None


def _registry() -> Registry:
    """Every schema file under its file name, the URI our $refs use (built once)."""
    global _REGISTRY
    if _REGISTRY is None:
        import json

        from referencing import Registry
        from referencing.jsonschema import DRAFT4

        resources = [
            (path.name, DRAFT4.create_resource(json.loads(path.read_text())))
            for path in sorted(schema_dir().glob("*.json"))
        ]
        _REGISTRY = Registry().with_resources(resources)
    return _REGISTRY
