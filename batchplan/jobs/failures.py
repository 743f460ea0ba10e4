"""Which failed requests a retry can fix, which it cannot, and which mean the
account itself cannot run anything.

From the service's documented error codes (Alibaba Cloud Model Studio
"Error messages" and the Batch API pages): throttling,
internal errors, timeouts and unavailable models are worth another try;
invalid parameters, content inspection and a context too long are not; an
account in arrears or a service not activated stops the job. Which codes
actually reach a batch's error file is UNCONFIRMED, so a failure is matched
by its code and, failing that, by words of its message. Anything unknown is
not retried: a retry costs a new batch and would fail the same way.
"""

from __future__ import annotations

RETRY = "retry"  # worth another try in a new part
FINAL = "final"  # a retry cannot fix it
ACCOUNT = "account"  # the account cannot run anything: stop the job

# Lower-cased codes.
_ACCOUNT_CODES = {
    "arrearage", "commoditynotpurchased", "prepaidbilloverdue", "postpaidbilloverdue",
    "accessdenied.unpurchased", "model.accessdenied", "insufficient_quota", "modelnotactivated",
}
_RETRY_CODES = {
    "throttling", "throttling.ratequota", "throttling.burstrate", "throttling.allocationquota",
    "limit_requests", "limit_burst_rate", "rate_limit_exceeded",
    "internalerror", "internal_error", "internalerror.algo", "internalerror.timeout", "systemerror",
    "modelservicefailed", "modelservingerror", "modelunavailable", "model_unavailable", "serviceunavailable",
    "requesttimeout", "request_timeout", "timeout",
    # A request the batch never ran (expired or cancelled first).
    "batch_expired", "batch_cancelled",
}
_FINAL_CODES = {
    "invalidparameter", "invalid_parameter", "invalid_parameter_error", "invalid_request_error",
    "datainspectionfailed", "data_inspection_failed", "mismatched_model", "duplicate_custom_id",
    "model_not_found", "url_not_found", "mismatched_test_url", "context_length_exceeded",
}
_ACCOUNT_WORDS = ("arrear", "good standing", "not activated", "overdue", "not purchased")
_RETRY_WORDS = ("throttl", "too many requests", "try again later", "timed out", "timeout", "unavailable",
                "internal error")


def classify_failure(code: str | None, message: str | None = None) -> str:
    """RETRY, FINAL or ACCOUNT for one failed request's code and message."""
    key = (code or "").strip().lower()
    text = (message or "").lower()
    if key in _ACCOUNT_CODES:
        return ACCOUNT
    if key in _RETRY_CODES:
        return RETRY
    if key.startswith("http_"):
        status = key[5:]
        if status in ("429", "408") or status.startswith("5"):
            return RETRY
        return FINAL
    if key.startswith("throttling"):
        return RETRY
    if key in _FINAL_CODES:
        return FINAL
    if any(word in text for word in _ACCOUNT_WORDS):
        return ACCOUNT
    if any(word in text for word in _RETRY_WORDS):
        return RETRY
    return FINAL
