"""The project's own error types: problems with the user's files, configs or arguments.

Scripts print any :class:`TriVisionError` as one line (``error: <message>``) and exit non-zero, without
a traceback (``--debug`` shows it); every other exception keeps its traceback, because it is a bug.
Every message names the file (or option) and what is wrong with it.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["TriVisionError", "DataError"]


class TriVisionError(Exception):
    """Base of every error that is about the user's input rather than a bug in the code."""


class DataError(TriVisionError, ValueError):
    """A data file (image, label, camera file, point cloud, ...) is missing or malformed."""

    def __init__(self, path: str | Path, why: str) -> None:
        super().__init__(f"{path}: {why}")
        self.path = Path(path)
        self.why = why
