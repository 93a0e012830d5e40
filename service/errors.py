"""Refusals the service explains: each carries a stable `reason` code and a message for people.

Domain code (the model registry, training jobs) raises these without knowing about HTTP; the API
maps every reason to a status in one table (`service.api.errors.STATUS`), so a reason answers with
the same status wherever it is raised.
"""


class ServiceError(Exception):
    """A request the service refuses, with why (`reason`, machine-readable)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
