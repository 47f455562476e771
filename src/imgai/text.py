"""Text that reaches a terminal or a one-entry-per-line file: control characters escaped.

File and class names come from the user's disk and may hold anything but "/" and NUL: a
newline would split a row of skipped.txt or the predict table, an ANSI escape would recolour (or
clear) the terminal. Everything imgai prints or writes line by line goes through here.
"""

from __future__ import annotations

import reprlib


def printable(text: object) -> str:
    """``text`` with every non-printable character written as a Python escape (``\\n``, ``\\x1b``);
    printable text, non-ASCII letters included, is returned unchanged."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def printable_lines(text: str) -> str:
    """Like :func:`printable` for each line of a multi-line message (newlines and tabs kept)."""
    return "\n".join("\t".join(printable(part) for part in line.split("\t")) for line in text.split("\n"))


_SHORT = reprlib.Repr()
_SHORT.maxstring = 60
_SHORT.maxother = 60
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 4
_SHORT.maxlevel = 3
_SHORT.maxlong = 40


def short_repr(value: object) -> str:
    """repr() for messages: bounded in length and depth whatever ``value`` holds (an expanded
    YAML alias, a 5,000-digit int), control characters escaped."""
    try:
        text = _SHORT.repr(value)
    except Exception:  # a value whose repr fails (an int past Python's digit limit) must not hide the error
        text = f"<{type(value).__name__}>"
    if len(text) > 120:
        text = text[:117] + "..."
    return printable(text)
