"""The one exception type for mistakes a user can make and fix.

Library code raises :class:`ImgaiError` with a single line that names the problem and the fix,
in the library's own words: parameter names and config keys, written in backticks
(``pass `model_path```, ``add `eval.baseline```). A front end may put its own words in their place:
the CLI turns `` `model_path` `` into ``--model`` (:meth:`ImgaiError.worded`). The CLI prints that
line and exits with :attr:`ImgaiError.exit_code` (2 by default) without a traceback. Anything else
that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

import re

_NAMED = re.compile(r"`([^`\s]+)`")


class ImgaiError(Exception):
    """A user-fixable problem: bad config, missing folder, wrong model file, ..."""

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def worded(self, words: dict[str, str]) -> str:
        """The message with each `name` replaced by ``words[name]``, or by the bare name."""
        return _NAMED.sub(lambda m: words.get(m.group(1), m.group(1)), self.message)

    @property
    def plain(self) -> str:
        """The message with the backticks around names removed."""
        return self.worded({})


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be, so both stop a run the same safe way."""
