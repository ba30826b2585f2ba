"""``/readyz``'s look at the PKCS#11 token that holds HSM-backed CA keys (docs/hsm.md).

The API process never signs, so it opens no session and needs no PIN: it asks the library whether the
token is present (C_GetTokenInfo), at most once a second per process, so that a load balancer polling
``/readyz`` does not become load on the HSM.
"""

from __future__ import annotations

import time

from pcaq.platform.settings import Settings

_EVERY_SECONDS = 1.0


class TokenCheck:
    """Whether the configured token answers: True/False, None when no token is configured."""

    def __init__(self, settings: Settings):
        self.module, self.label = settings.pkcs11_module, settings.pkcs11_token_label
        self._last: tuple[float, bool] | None = None

    def answers(self) -> bool | None:
        """The token's presence, asked again when the last answer is more than a second old."""
        if self.module is None or self.label is None:
            return None
        now = time.monotonic()
        if self._last is None or now - self._last[0] > _EVERY_SECONDS:
            from pcaq.ca.pkcs11_token import token_answers  # loads the PKCS#11 binding only when used

            self._last = (now, token_answers(self.module, self.label))
        return self._last[1]
