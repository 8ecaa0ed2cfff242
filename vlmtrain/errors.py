"""vlmtrain's own errors: a config or checkpoint that stops a run, said in one line.

They subclass vlmdata's `DataError` ("bad input that stops a command"), so the CLI's one rule
(`cli.common.handle_errors`: message, exit 2) and the rank entry point treat them as they treat
bad data, with the same messages; `ConfigError` is also a `ValueError`, as the recipes' option
checks always were.
"""

from __future__ import annotations

from vlmdata.core.errors import DataError


class TrainError(DataError):
    """A training input (config, checkpoint, export) that stops a run; names file and reason."""


class ConfigError(TrainError, ValueError):
    """A config key or value that cannot run: the message names the key (and the file)."""


class CheckpointError(TrainError):
    """A checkpoint or export that does not fit the run or the model."""
