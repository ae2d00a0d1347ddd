"""API errors as the kube-apiserver reports them: a metav1 Status body."""


class ApiError(Exception):
    """Raised anywhere in the emulator; the HTTP layer turns it into a Status.

    `code` is the HTTP status, `reason` the StatusReason (NotFound,
    AlreadyExists, Conflict, Invalid, Expired, BadRequest, ...), `details`
    the optional StatusDetails dict (name, group, kind, causes, uid,
    retryAfterSeconds). `metadata` is the ListMeta of the Status (a 410 for an
    expired continue token carries a new `continue` there)."""

    def __init__(self, code, reason, message, details=None, metadata=None,
                 headers=None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.metadata = metadata or {}
        self.headers = headers or {}

    def status(self):
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": dict(self.metadata),
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body
