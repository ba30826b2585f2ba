"""Thin handlers: one function per operation, from validated input to the output shape."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pcaq.ca.audit_trail import ApiCall
from pcaq.ca.authorities import Authorities
from pcaq.ca.issuance import Issuance
from pcaq.platform.identity import Caller


@dataclass(frozen=True)
class Context:
    """What a handler may use: who calls, and the domain services."""

    caller: Caller
    authorities: Authorities
    issuance: Issuance
    request_id: str = "-"
    operation: str = "-"

    def call(self, params: dict) -> ApiCall:
        """This call, for a change to record its audit entry in the same atomic step."""
        return ApiCall(self.operation, self.caller, self.request_id, params)


Handler = Callable[[Context, dict], "dict | None"]
