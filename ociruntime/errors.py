"""The one exception type commands raise to fail with a clear, one-line message, and the
one place every message is cut to a readable size."""

from _json import encode_basestring_ascii

#: A value quoted in a message keeps this many characters (then "..."): enough to
#: recognise a path, an id or a field's value; a 30 MB string in config.json must not
#: come back as a 30 MB error line (containerd stores and forwards those lines).
VALUE_LIMIT = 200
#: A whole message keeps this many characters (its head and its tail, which usually
#: says what is wrong), however many values it quotes.
MESSAGE_LIMIT = 1000
_HEAD = MESSAGE_LIMIT * 2 // 3
_TAIL = MESSAGE_LIMIT - _HEAD - 5

#: Control characters would break the one-line rule (newlines) or a terminal (escapes,
#: NUL); they are shown as \xNN (a newline as a space, as the log always did).
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(32), 127)}
_CONTROL[10] = " "


def cut(message: str) -> str:
    """The message on one line, each whitespace-separated word (a quoted value, a path)
    cut to VALUE_LIMIT plus "...", the whole to MESSAGE_LIMIT. Lengths are counted as
    the JSON log writes them (each non-ASCII character escaped as \\uXXXX), so a line in
    --log is bounded too. Idempotent, and almost free for the usual short message."""
    if not message.isprintable():
        # and an unpaired surrogate (a config.json name quoted back) as \udXXX: stderr
        # and the JSON log would each spell it their own way
        message = message.translate(_CONTROL).encode("utf-8", "backslashreplace").decode()
    if len(message) <= VALUE_LIMIT // 6:  # even fully escaped, within every bound
        return message
    words = message.split(" ")
    longest = VALUE_LIMIT + 3  # a word cut before ("..." included) stays as it is
    if any(_width(w) > longest for w in words):
        message = " ".join(w if _width(w) <= longest else _head(w) + "..." for w in words)
    if _width(message) > MESSAGE_LIMIT:
        message = _head(message, _HEAD) + " ... " + _head(message[::-1], _TAIL)[::-1]
    return message


def _width(text: str) -> int:
    """Characters text takes in the JSON log (escaped to ASCII, as json.dumps writes it)."""
    return len(encode_basestring_ascii(text)) - 2


def _head(text: str, budget: int = VALUE_LIMIT) -> str:
    """The longest start of text whose _width is at most budget."""
    n = min(len(text), budget)
    while n and _width(text[:n]) > budget:
        n = n * budget // _width(text[:n])
    return text[:n]


class RuntimeFailure(Exception):
    """A user-visible failure: the CLI prints `str(self)` as one line and exits `exit_code`.

    The message is cut here (see cut()), so whatever a failure quotes from config.json,
    an OSError or a hook's output, every consumer (stderr, --log, the init's report to
    create over its pipe, exec's prefix) sees the bounded form."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(cut(message))
        self.exit_code = exit_code


def pointer(*parts: str | int) -> str:
    """The JSON pointer (RFC 6901) of a field: pointer("linux", "namespaces", 0) is
    "/linux/namespaces/0". Every message about a field of a document names it this way."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def field_message(where: str, reason: str, document: str = "config.json") -> str:
    """The one shape of a message about a document's field: `config.json: /linux/sysctl:
    reason`. `where` is a JSON pointer (see pointer()); `document` is the file the user
    wrote (config.json, or exec's --process file). For warnings; failures use
    field_error. `exec ID ARGS...` has no document the user wrote (its process is
    config.json's with the command line's arguments): its failures read as runc's,
    COMMAND_LINE_PROCESS then the reason."""
    if document == COMMAND_LINE_PROCESS:
        return f"{document}: {reason}"
    return f"{document}: {where}: {reason}"


#: The "document" of `exec ID ARGS...`'s process: runc's words for a failure to start it.
COMMAND_LINE_PROCESS = "unable to start container process"


def field_error(
    where: str, reason: str, document: str = "config.json", exit_code: int = 1
) -> RuntimeFailure:
    """A failure about a document's field, worded by field_message."""
    return RuntimeFailure(field_message(where, reason, document), exit_code)


def field_error_at(where: str, reason: str) -> RuntimeFailure:
    """field_error for a place a caller passed down whole: "<document>: <pointer>" (exec
    names its --process file so), a bare pointer (config.json's), or a command-line
    flag such as --process-label, which is named as it is."""
    document, _, at = where.rpartition(": ")
    if not at.startswith("/"):
        return RuntimeFailure(f"{where}: {reason}")
    return field_error(at, reason, document or "config.json")
