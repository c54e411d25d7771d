"""SHELL: send an SMS with the twilio SDK.

twilio is imported only when a message actually goes out: most runs send
nothing, and the import costs about 100 ms of every cron run's cold start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from check_status.notify import NotifyError

# Twilio error codes that will fail again for the same recipient, whatever we do.
PERMANENT_RECIPIENT_CODES = {
    21211: "invalid 'To' number",
    21408: "region not enabled for this account",
    21610: "recipient replied STOP",
    21614: "not a mobile number",
    21608: "unverified number on a trial account",
}
AUTH_FAILED_CODE = 20003
SEND_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class TwilioSettings:
    account_sid: str
    auth_token: str
    sender_number: str | None
    messaging_service_sid: str | None
    api_base_url: str
    timeout: float = SEND_TIMEOUT_SECONDS

    def __repr__(self) -> str:  # the token must never reach a log line
        return f"TwilioSettings(account_sid={self.account_sid!r}, ...)"


def make_client(settings: TwilioSettings) -> Any:
    import logging

    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    # The SDK's default HTTP timeout is None: a stalled Twilio would hang the run.
    http_client = TwilioHttpClient(timeout=settings.timeout)
    # The SDK logs each request's headers at INFO, Basic auth included: keep it
    # quiet even if a caller turns logging on.
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)
    client = Client(settings.account_sid, settings.auth_token, http_client=http_client)
    # Client(environment={}) still falls back to os.environ, where TWILIO_REGION
    # or TWILIO_EDGE would rewrite the host; clear them explicitly.
    client.region = None
    client.edge = None
    client.api.base_url = settings.api_base_url
    return client


def send_sms(client: Any, settings: TwilioSettings, to: str, body: str) -> str:
    """Send one SMS; return Twilio's message SID. Raises NotifyError."""
    import requests
    from twilio.base.exceptions import TwilioException

    sender: dict[str, str] = (
        {"messaging_service_sid": settings.messaging_service_sid}
        if settings.messaging_service_sid
        else {"from_": settings.sender_number or ""}
    )
    try:
        message = client.messages.create(to=to, body=body, **sender)
    except TwilioException as error:
        # TwilioRestException, and TwilioServiceException (twilio >= 9.10, RFC 9457
        # errors), which is not a TwilioRestException: both carry .status and .code.
        raise classify_rest_error(
            getattr(error, "status", None), getattr(error, "code", None)
        ) from None
    except requests.exceptions.Timeout:
        raise NotifyError(
            f"Twilio timed out after {settings.timeout:g}s", permanent=False
        ) from None
    except requests.exceptions.RequestException as error:
        from check_status.probes.http import describe_request_error

        reason = describe_request_error(error, settings.timeout)
        raise NotifyError(f"Twilio unreachable: {reason}", permanent=False) from None
    except ValueError:
        # A proxy's HTML error page where JSON was expected.
        raise NotifyError("Twilio answered something that is not JSON", permanent=False) from None
    return str(message.sid)


def classify_twilio_error(error: Exception) -> NotifyError:
    return classify_rest_error(getattr(error, "status", None), getattr(error, "code", None))


def classify_rest_error(status: int | None, code: int | None) -> NotifyError:
    if code in PERMANENT_RECIPIENT_CODES:
        return NotifyError(
            f"Twilio {code}: {PERMANENT_RECIPIENT_CODES[code]}", permanent=True, code=code
        )
    if code == AUTH_FAILED_CODE or status == 401:
        return NotifyError(
            "Twilio 20003: authentication failed; check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN",
            permanent=False,
            code=code,
            config=True,
        )
    return NotifyError(f"Twilio HTTP {status} (code {code})", permanent=False, code=code)


def check_credentials(settings: TwilioSettings) -> str:
    """An authenticated read of the account, sending nothing. Returns its status."""
    import requests
    from twilio.base.exceptions import TwilioException

    client = make_client(settings)
    try:
        account = client.api.v2010.accounts(settings.account_sid).fetch()
    except TwilioException as error:
        raise classify_rest_error(
            getattr(error, "status", None), getattr(error, "code", None)
        ) from None
    except requests.exceptions.RequestException as error:
        from check_status.probes.http import describe_request_error

        raise NotifyError(
            f"Twilio unreachable: {describe_request_error(error, settings.timeout)}",
            permanent=False,
        ) from None
    return str(account.status)
