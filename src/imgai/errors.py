"""The one exception type for mistakes a user can make and fix.

Library code raises :class:`ImgaiError` with a single line that names the problem and the fix;
the CLI prints that line and exits with :attr:`ImgaiError.exit_code` (2 by default) without a
traceback. Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


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
