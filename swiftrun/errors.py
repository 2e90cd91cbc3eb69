"""Exception types and the exit codes they map to.

Every error a user can cause is raised as a SwiftrunError subclass whose message is one line naming
the file, key or flag at fault and what would fix it. The CLI prints that line and exits with the
error's code; nothing else in the package prints tracebacks at users.
"""

from __future__ import annotations


class SwiftrunError(Exception):
    """Base class. ``exit_code`` is what the process exits with."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # one line, always
        text = self.message if not self.hint else f"{self.message} ({self.hint})"
        return " ".join(text.split("\n"))


class UsageError(SwiftrunError):
    """A bad flag or argument on the command line."""

    exit_code = 2


class ConfigError(SwiftrunError):
    """A bad project file, key, value or missing credential: fix the input and run again."""

    exit_code = 2


class CloudError(SwiftrunError):
    """The cloud refused or failed an operation."""

    exit_code = 1


class RemoteError(SwiftrunError):
    """A node could not be reached or a command on it failed."""

    exit_code = 1


class ClusterNotFound(SwiftrunError):
    exit_code = 1


class Interrupted(SwiftrunError):
    exit_code = 130
