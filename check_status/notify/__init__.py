"""SHELL: delivery channels. Each sends one message and raises NotifyError on failure.

`permanent` tells the caller whether retrying can ever help: an invalid number
(21211) will stay invalid; a timeout or a 503 may not happen next minute.
"""

from __future__ import annotations


class NotifyError(Exception):
    def __init__(
        self, reason: str, *, permanent: bool, code: int | None = None, config: bool = False
    ):
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.code = code
        self.config = config  # the operator's settings are wrong (bad credentials)
