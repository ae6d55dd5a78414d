"""One error base for the project. Each subclass also subclasses the matching builtin so
callers can catch either, and carries a message a user can act on. The REST API maps
these to HTTP statuses in one place (rag.api.app)."""


class RagError(Exception):
    """Base of every error the project raises on purpose."""

    http_status = 500


class ConfigError(RagError, ValueError):
    http_status = 400


class InputError(RagError, ValueError):
    """Bad user input: an unreadable file, an empty question, a bad argument."""

    http_status = 400


class NotFoundError(RagError, KeyError):
    http_status = 404

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else ""


class ModelError(RagError, RuntimeError):
    """A packaged model is missing, corrupt, or does not match what was expected."""

    http_status = 503


class IndexStateError(RagError, RuntimeError):
    """Index files and the database disagree; re-ingest or run `rag ingest --rebuild`."""

    http_status = 500


class ForbiddenError(RagError, PermissionError):
    http_status = 403


class UnauthorizedError(RagError, PermissionError):
    http_status = 401


class UnsafeSQLError(RagError, ValueError):
    """A SQL statement failed validation: it is never executed."""

    http_status = 400


class OverloadedError(RagError, RuntimeError):
    """The service is at capacity: retry after `retry_after` seconds (HTTP 503, Retry-After)."""

    http_status = 503

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after


class StorageFullError(RagError, OSError):
    """The data folder's disk filled up during a change; nothing was committed."""

    http_status = 507
