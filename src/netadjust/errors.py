"""Error types.

Every problem caused by what the user asked for (a flag, a file, a data directory) raises a
subclass of :class:`NetadjustError`. The CLI prints its message on one line and exits with
status 2; library callers can catch the one base class.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class NetadjustError(Exception):
    """A problem with the user's input: the message says what was given and what is allowed."""


class ConfigError(NetadjustError):
    """An invalid configuration value (flag, config file entry or API argument)."""


class WidthsError(NetadjustError):
    """A widths mapping or widths file that does not fit the architecture."""


class DataError(NetadjustError):
    """A data set that is missing, corrupt or does not fit the model."""


class TrainingError(NetadjustError):
    """Training could not go on (for example the loss became NaN)."""


def closest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """A ' (did you mean ...?)' hint for an unknown name, or '' if nothing is close."""
    matches = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    return f" (did you mean {', '.join(matches)}?)" if matches else ""
