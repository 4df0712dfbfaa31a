"""Errors a user can cause. The CLI turns them into one line on stderr and exit code 2."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix: a bad path, flag or file. Message says what and how."""

    exit_code = 2


class DataError(UserError):
    """A dataset folder that is missing, incomplete or incompatible."""


class CheckpointError(UserError):
    """A checkpoint that is missing, truncated, unsafe or of another format version."""


class TrainingError(UserError):
    """Training had to stop (e.g. a non-finite loss); the last good checkpoint is kept."""
