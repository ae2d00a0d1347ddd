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
        }
        if self.reason:     # StatusReasonUnknown is "", omitted
            body["reason"] = self.reason
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def invalid(res, name, causes):
    """422 Invalid as the apiserver words it: `Kind "name" is invalid: ...`,
    the causes in [] when there is more than one."""
    parts = ["%s: %s" % (c["field"], c["message"]) if c.get("field") else c["message"]
             for c in causes]
    text = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    details = {"name": name}
    if res.group:
        details["group"] = res.group
    details["kind"] = res.kind
    details["causes"] = causes
    return ApiError(422, "Invalid", '%s "%s" is invalid: %s' % (res.qualified_kind, name, text),
                    details)


def cause(reason, field, message):
    return {"reason": reason, "message": message, "field": field}


def not_found(res, name):
    return ApiError(404, "NotFound", '%s "%s" not found' % (res.qualified, name),
                    _details(res, name))


def already_exists(res, name):
    return ApiError(409, "AlreadyExists", '%s "%s" already exists' % (res.qualified, name),
                    _details(res, name))


def conflict(res, name):
    return ApiError(409, "Conflict",
                    'Operation cannot be fulfilled on %s "%s": the object has been modified; '
                    'please apply your changes to the latest version and try again'
                    % (res.qualified, name), _details(res, name))


def bad_request(message):
    return ApiError(400, "BadRequest", message)


def _details(res, name):
    d = {"name": name}
    if res.group:
        d["group"] = res.group
    d["kind"] = res.plural
    return d
