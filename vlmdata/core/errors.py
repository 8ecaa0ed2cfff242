"""Errors that the CLI turns into a clear message and a non-zero exit (no traceback)."""


class DataError(Exception):
    """Bad input that stops a command: the message names the file, the row and the reason."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None):
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        super().__init__(where + message)
        self.file = file
        self.line = line


class Rejected(Exception):
    """One input row or image is dropped, not the command: `reason` is its rejects-table reason
    (docs/DESIGN.md, contract 2) and `detail` says why. Stages subclass it so each catches only
    its own rejects."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
