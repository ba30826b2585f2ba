"""Permissions (CreatePermission, DeletePermission, ListPermissions) and resource policies (PutPolicy,
GetPolicy, DeletePolicy) of a CA.

Both are stored and returned as AWS does; pcaq does not act on them (every caller of an account may
use that account's CAs). A permission is held by ``acm.amazonaws.com`` for one source account and
lists actions among IssueCertificate, GetCertificate and ListPermissions. A policy must be a JSON
object with a ``Statement``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from pcaq.ca.arns import parse_ca_arn
from pcaq.ca.audit_trail import ApiCall
from pcaq.ca.authorities import Authorities, decode_page_token, encode_page_token
from pcaq.ca.authority import DELETED, FAILED
from pcaq.errors import InvalidArgument, InvalidPolicy, InvalidState, NotFound, PermissionAlreadyExists
from pcaq.platform.identity import Caller

ACM_PRINCIPAL = "acm.amazonaws.com"
ACTIONS = ("IssueCertificate", "GetCertificate", "ListPermissions")
MAX_PAGE = 1000


def check_principal(principal: str) -> None:
    """InvalidArgument unless the principal is the one AWS allows (ACM's service principal)."""
    if principal != ACM_PRINCIPAL:
        raise InvalidArgument(f"Principal must be {ACM_PRINCIPAL}, not {principal[:128]!r}.")


def normalise_actions(actions: list[str]) -> list[str]:
    """The actions in AWS's order, each once; InvalidArgument for an unknown one."""
    unknown = [a for a in actions if a not in ACTIONS]
    if unknown:
        raise InvalidArgument(f"Actions must be among {', '.join(ACTIONS)}; {unknown[0]!r} is not.")
    return [a for a in ACTIONS if a in actions]


def check_policy(text: str) -> None:
    """InvalidPolicy unless ``text`` is a JSON policy document: an object whose Statement is an
    object or a non-empty list of objects."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InvalidPolicy("The policy is not valid JSON.") from exc
    if not isinstance(doc, dict):
        raise InvalidPolicy("The policy must be a JSON object with a Statement.")
    statement = doc.get("Statement")
    statements = [statement] if isinstance(statement, dict) else statement
    if not isinstance(statements, list) or not statements or not all(isinstance(s, dict) for s in statements):
        raise InvalidPolicy("The policy must have a Statement: an object or a non-empty list of objects.")
    for s in statements:
        if s.get("Effect") not in ("Allow", "Deny"):
            raise InvalidPolicy("Every statement needs an Effect of Allow or Deny.")


@dataclass
class Permissions:
    """Permission and policy operations, as the API calls them."""

    authorities: Authorities

    def _usable(self, caller: Caller, arn: str) -> str:
        ca = self.authorities.load(caller, parse_ca_arn(arn))
        if ca.status in (DELETED, FAILED):
            raise InvalidState(f"The certificate authority is {ca.status}.")
        return ca.id

    def _audit(self, call: ApiCall | None) -> dict[str, str] | None:
        return call.fields(self.authorities.store.clock()) if call is not None else None

    def create(
        self,
        caller: Caller,
        arn: str,
        principal: str,
        actions: list[str],
        source: str | None,
        call: ApiCall | None = None,
    ) -> None:
        """Grant actions to the principal; PermissionAlreadyExists if it holds a permission already.
        The call's audit entry is recorded in the same step as the permission."""
        check_principal(principal)
        ca_id = self._usable(caller, arn)
        account = source or caller.account
        doc = {
            "CertificateAuthorityArn": arn,
            "CreatedAt": round(time.time(), 3),
            "Principal": principal,
            "SourceAccount": account,
            "Actions": normalise_actions(actions),
        }
        if not self.authorities.store.add_permission(ca_id, principal, account, doc, self._audit(call)):
            raise PermissionAlreadyExists(
                f"{principal} already holds a permission on {arn}; delete it first to change it."
            )

    def delete(
        self, caller: Caller, arn: str, principal: str, source: str | None, call: ApiCall | None = None
    ) -> None:
        """Remove the principal's permission (with the call's audit entry, in one step);
        ResourceNotFound if it holds none."""
        ca_id = self._usable(caller, arn)
        account = source or caller.account
        if not self.authorities.store.remove_permission(ca_id, principal, account, self._audit(call)):
            raise NotFound(f"{principal[:128]} holds no permission on {arn}.")

    def list(self, caller: Caller, arn: str, max_results: int | None, next_token: str | None):
        """A page of the CA's permissions and the next token (or None)."""
        offset = decode_page_token(next_token)
        ca_id = self._usable(caller, arn)
        items = self.authorities.store.list_permissions(ca_id)
        size = min(max_results or MAX_PAGE, MAX_PAGE)
        nxt = encode_page_token(offset + size) if offset + size < len(items) else None
        return items[offset : offset + size], nxt

    def put_policy(self, caller: Caller, arn: str, policy: str, call: ApiCall | None = None) -> None:
        """Attach or replace the CA's resource policy (with the call's audit entry, in one step)."""
        check_policy(policy)
        self.authorities.store.put_policy(self._usable(caller, arn), policy, self._audit(call))

    def get_policy(self, caller: Caller, arn: str) -> str:
        """The CA's resource policy; ResourceNotFound when none is attached."""
        policy = self.authorities.store.get_policy(self._usable(caller, arn))
        if policy is None:
            raise NotFound(f"No resource policy is attached to {arn}.")
        return policy

    def delete_policy(self, caller: Caller, arn: str, call: ApiCall | None = None) -> None:
        """Remove the CA's resource policy (succeeds when there is none), with the call's audit entry
        in the same step."""
        self.authorities.store.delete_policy(self._usable(caller, arn), self._audit(call))
