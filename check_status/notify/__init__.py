"""SHELL: delivery channels. Each sends one message and raises NotifyError on failure.

`kind` tells the caller what a failure means and whether retrying can help:

- "config": the sender's settings or account are wrong (bad credentials, a From
  number that cannot send SMS). Every recipient fails the same way; keep the
  message and retry once the operator has fixed it.
- "recipient": permanent for this one number (invalid, opted out with STOP, a
  landline), or for this one message. Sending it again can never succeed.
- "transient": a timeout, a refused connection, a 429 or a 5xx. It may work next minute.
- "unknown": an answer we cannot place (a 4xx whose code we do not know). Not
  known to be permanent, so it is kept and retried.

`permanent` (True only for "recipient") and `config` (True only for "config") are
the same facts as booleans, for callers written before `kind` existed.
"""

from __future__ import annotations

# How long Twilio and the heartbeat may take: here, in this small module, so the
# run's bound (runner.worst_case_seconds) is known on every cron run without
# importing the modules that talk to them.
SEND_TIMEOUT_SECONDS = 10
HEARTBEAT_TIMEOUT_SECONDS = 5

KINDS = ("config", "recipient", "transient", "unknown")


class NotifyError(Exception):
    def __init__(
        self,
        reason: str,
        *,
        permanent: bool | None = None,
        code: int | None = None,
        config: bool | None = None,
        kind: str | None = None,
    ):
        """`kind` directly, or (older call sites) `permanent`/`config`, from which it follows.

        NotifyError(reason, permanent=False) is "transient", permanent=True is
        "recipient", config=True is "config". Giving `kind` with a `permanent` or
        `config` that contradicts it is a bug and raises ValueError.
        """
        if kind is None:
            if config and permanent:
                raise ValueError("a NotifyError is not both config and permanent")
            kind = "config" if config else "recipient" if permanent else "transient"
        if kind not in KINDS:
            raise ValueError(f"NotifyError kind must be one of {KINDS}, not {kind!r}")
        if permanent is not None and permanent != (kind == "recipient"):
            raise ValueError(f"permanent={permanent} contradicts kind={kind!r}")
        if config is not None and config != (kind == "config"):
            raise ValueError(f"config={config} contradicts kind={kind!r}")
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.code = code

    @property
    def permanent(self) -> bool:
        """Retrying can never help: this number (or this message) fails for good."""
        return self.kind == "recipient"

    @property
    def config(self) -> bool:
        """The operator's settings are wrong (credentials, sender, account)."""
        return self.kind == "config"

    def __reduce__(self):  # keyword-only arguments: rebuild with them, not from args
        return (_rebuild, (self.reason, self.kind, self.code))


def _rebuild(reason: str, kind: str, code: int | None) -> NotifyError:
    return NotifyError(reason, kind=kind, code=code)
