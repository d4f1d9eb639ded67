"""Quoting client-supplied text in replies and logs (PROTOCOL §3).

Anything a client sent is shown, where it is shown at all, as a short, escaped prefix:
one client cannot make a reply or a log line huge (a 600 KB `stream_exists` echo), nor
forge a log line with a newline in a task id, nor make a JSON log line lie about its
level. `quote` is the one way to do it.
"""

from __future__ import annotations

QUOTE_CHARS = 64  # characters of client text shown before "..."


def quote(text: str, limit: int = QUOTE_CHARS) -> str:
    """`text` as a single-quoted literal of at most `limit` of its characters.

    repr() escapes every character str.isprintable() rejects (control characters, line
    and paragraph separators, lone surrogates) and backslashes, so the result is
    printable text on one line; double quotes become \x22 as well, so the text cannot
    end a JSON string it is embedded in, even in a naively formatted log line.
    """
    shown = repr(text[:limit]).replace('"', "\\x22")
    return shown + "..." if len(text) > limit else shown
