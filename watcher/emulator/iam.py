"""IAM ``GetAccountAuthorizationDetails`` paginated as AWS documents it (moto's is not).

moto (5.2) answers the whole account in one page: it ignores ``MaxItems`` and ``Marker`` and
always says ``IsTruncated: false``. AWS pages it: ``MaxItems`` 1..1000, 100 when not given;
``IsTruncated`` and an opaque ``Marker`` for the next page (IAM API reference,
GetAccountAuthorizationDetails). :func:`install` keeps moto's answer (users, groups, roles and
policies with their ``Tags``, trust policies, inline and attached policies, ``Filter`` applied)
and cuts it into such pages: the items of the four lists taken in that order, ``MaxItems`` of
them a page, so a page can end in the middle of the roles, or between users and roles.

Test hook: :meth:`IamFaults.throttle` makes the next calls answer ``Throttling`` ("Rate
exceeded", HTTP 400), as IAM does past its request rate. Left out: AWS may return fewer items
than ``MaxItems`` even when more follow (callers must follow ``IsTruncated``, which this does
not exercise); markers that expire.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from typing import Any

from werkzeug.exceptions import HTTPException

_LISTS = ("UserDetailList", "GroupDetailList", "RoleDetailList", "Policies")
DEFAULT_MAX_ITEMS = 100
MAX_ITEMS = 1000

_lock = threading.Lock()
_installed: IamFaults | None = None


class IamFaults:
    """Faults the next ``GetAccountAuthorizationDetails`` calls answer with (process-wide)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._skip = 0
        self._throttled = 0
        self.calls = 0
        """``GetAccountAuthorizationDetails`` calls answered or refused since the last clear."""

    def throttle(self, times: int, *, after: int = 0) -> None:
        """Answer ``Throttling`` to ``times`` calls, once ``after`` more calls were answered."""
        with self._lock:
            self._skip, self._throttled = after, times

    def clear(self) -> None:
        with self._lock:
            self._skip = self._throttled = self.calls = 0

    def _next_throttled(self) -> bool:
        with self._lock:
            self.calls += 1
            if self._skip:
                self._skip -= 1
                return False
            if self._throttled:
                self._throttled -= 1
                return True
            return False


def install() -> IamFaults:
    """Page moto's GetAccountAuthorizationDetails in this process (idempotent)."""
    global _installed
    with _lock:
        if _installed is not None:
            return _installed
        from moto.core.responses import ActionResult
        from moto.iam.exceptions import IAMException
        from moto.iam.responses import IamResponse

        faults = IamFaults()
        whole = IamResponse.get_account_authorization_details

        def paginated(self: Any) -> ActionResult:
            if faults._next_throttled():
                raise _Throttled()
            limit = self._get_int_param("MaxItems", DEFAULT_MAX_ITEMS)
            if not 1 <= limit <= MAX_ITEMS:
                raise IAMException("ValidationError", f"MaxItems must be between 1 and {MAX_ITEMS}")
            scope = sorted(self._get_param("Filter", []))
            start = _offset(self._get_param("Marker"), scope)
            answer: dict[str, Any] = dict(whole(self).result)  # type: ignore[call-overload]
            items = [(key, item) for key in _LISTS for item in answer[key]]
            page = items[start : start + limit]
            for key in _LISTS:
                answer[key] = [item for k, item in page if k == key]
            answer["IsTruncated"] = start + limit < len(items)
            if answer["IsTruncated"]:
                answer["Marker"] = _marker(start + limit, scope)
            return ActionResult(answer)

        IamResponse.get_account_authorization_details = paginated  # type: ignore[method-assign]
        _installed = faults
        return faults


class _Throttled(HTTPException):
    """IAM's answer past its request rate, in its query-protocol error form.

    A werkzeug error, which moto's server sends as it is: moto's own IAM exceptions are checked
    against the IAM model's error shapes, which have no ``Throttling`` (a warning, so an error
    under this project's tests).
    """

    code = 400
    description = (
        '<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">'
        "<Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error>"
        "<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
    )

    def get_headers(self, *args: Any, **kwargs: Any) -> list[tuple[str, str]]:
        return [("Content-Type", "text/xml")]


def _marker(offset: int, scope: list[str]) -> str:
    return base64.b64encode(json.dumps({"offset": offset, "filter": scope}).encode()).decode()


def _offset(marker: str | None, scope: list[str]) -> int:
    """Where a page starts; a marker of another filter, or not one of ours, is refused."""
    from moto.iam.exceptions import IAMException

    if not marker:
        return 0
    try:
        state = json.loads(base64.b64decode(marker, validate=True))
        offset = int(state["offset"])
        valid = state["filter"] == scope and offset >= 0
    except (binascii.Error, ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        raise IAMException("ValidationError", "Invalid Marker")
    return offset
