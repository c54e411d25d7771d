"""check-status serve: POST /twilio/sms, Twilio's inbound-SMS webhook.

The incident is a real one: two real runs (run_once) against a nodeos that is
not there, texting ALERT_TO through the Twilio stand-in. The webhook is posted
to over real sockets, signed with the twilio library's own RequestValidator,
and the state file is read back to see what the ACK did, or that it did nothing.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
from twilio.request_validator import RequestValidator

from check_status.config import load
from check_status.model import utc_now
from check_status.runner import run_once
from tests.standins import TwilioStandIn, free_port

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "f00dfeedf00dfeedf00dfeedf00dfeed"
OTHER_TOKEN = "0badc0de0badc0de0badc0de0badc0de"
SENDER = "+15005550006"
LUKE, ROB = "+14155550101", "+447700900123"
STRANGER = "+12025550199"
ALERT_TO = f"luke:{LUKE}@America/New_York, rob:{ROB}@Europe/London"
# The public URL Twilio posts to (through a proxy): not the loopback address served.
WEBHOOK_URL = "https://eu2.example.io/twilio/sms"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
FORM = "application/x-www-form-urlencoded"


def sms(sender: str, body: str) -> dict[str, str]:
    """The form Twilio posts for an inbound SMS, the fields that matter and a few more."""
    return {
        "ToCountry": "US",
        "SmsMessageSid": "SM" + "5" * 32,
        "NumMedia": "0",
        "Body": body,
        "To": SENDER,
        "From": sender,
        "AccountSid": SID,
        "ApiVersion": "2010-04-01",
    }


def sign(params: dict[str, str], token: str = TOKEN, url: str = WEBHOOK_URL) -> str:
    return RequestValidator(token).compute_signature(url, params)


@pytest.fixture
def node(write_env, state_file: Path):
    """Settings whose state holds an open nodeos incident texted to luke and rob."""
    with TwilioStandIn(auth_token=TOKEN) as twilio:
        settings: dict[str, object] = {
            "NODEOS_URL": f"http://127.0.0.1:{free_port()}",  # nobody listens: down
            "TWILIO_ACCOUNT_SID": SID,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "TWILIO_FROM": SENDER,
            "ALERT_TO": ALERT_TO,
            "ALERT_AFTER": 2,
            "CALL_ON": "NEVER",
            "TWILIO_API_BASE_URL": twilio.url,
            "TWILIO_WEBHOOK_URL": WEBHOOK_URL,
        }
        config = load(str(write_env(**settings)))
        now = utc_now()
        run_once(config, now - timedelta(minutes=2))
        run_once(config, now - timedelta(minutes=1))
        assert {m["to"] for m in twilio.messages} == {LUKE, ROB}
        incident = nodeos_incident(state_file)
        assert incident["notified_status"] == "CRITICAL" and incident["acked_by"] is None
        yield settings


def state_of(state_file: Path) -> dict:
    return json.loads(state_file.read_text())


def nodeos_incident(state_file: Path) -> dict:
    return state_of(state_file)["alerts"]["checks"]["nodeos"]["incident"]


def post(url: str, params: dict[str, str], signature: str | None, **kwargs) -> requests.Response:
    headers = {"Content-Type": FORM}
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    headers.update(kwargs.pop("headers", {}))
    return requests.post(
        url + kwargs.pop("path", "/twilio/sms"),
        data=urlencode(params),
        headers=headers,
        timeout=15,
        **kwargs,
    )


def exchange(address: tuple[str, int], request: bytes, pause: float = 0.0) -> bytes:
    """Everything the server answers to `request` (sent in two parts `pause` apart)."""
    with socket.create_connection(address, timeout=10) as raw:
        head, _, body = request.partition(b"\r\n\r\n")
        raw.sendall(head + b"\r\n\r\n")
        if pause:
            time.sleep(pause)
        if body:
            # Dropped meanwhile: what it answered (nothing) is the answer.
            with contextlib.suppress(OSError):
                raw.sendall(body)
        answer = b""
        try:
            while chunk := raw.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    return answer


def raw_post(params: dict[str, str], signature: str | None, **headers: str) -> bytes:
    body = urlencode(params).encode()
    fields = {
        "Host": "eu2.example.io",
        "Content-Type": FORM,
        "Content-Length": str(len(body)),
        **({"X-Twilio-Signature": signature} if signature else {}),
        **headers,
    }
    lines = "".join(f"{k}: {v}\r\n" for k, v in fields.items() if v != "")
    return f"POST /twilio/sms HTTP/1.1\r\n{lines}\r\n".encode() + body


def assert_no_secret(response_text: str, *signatures: str) -> None:
    assert TOKEN not in response_text
    for signature in signatures:
        assert signature not in response_text


# --- an operator's ACK ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ("ACK", "[eu2] ACK by luke (webhook): acknowledged nodeos"),
        ("ack nodeos", "[eu2] ACK nodeos by luke (webhook): acknowledged nodeos"),
        (" Acknowledged. ", "[eu2] ACK by luke (webhook): acknowledged nodeos"),
    ],
)
def test_a_signed_ack_from_an_operator_acknowledges_the_incident(
    serve, node, state_file, body, said
):
    _server, url = serve(**node)
    assert ROB not in json.dumps(state_of(state_file).get("outbox"))
    params = sms(LUKE, body)
    signature = sign(params)
    response = post(url, params, signature)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "text/xml"
    assert response.text == (
        f'<?xml version="1.0" encoding="UTF-8"?><Response><Message>{said}</Message></Response>'
    )
    assert_no_secret(response.text, signature)
    incident = nodeos_incident(state_file)
    assert incident["acked_by"] == LUKE
    assert incident["acked_at"] is not None
    # rob, who was told too, is told who took it: queued for the next run to send.
    assert "rob" not in response.text and ROB in json.dumps(state_of(state_file)["outbox"])


def test_a_second_ack_keeps_the_first_and_says_there_is_nothing_left(serve, node, state_file):
    _server, url = serve(**node)
    first = sms(LUKE, "ACK")
    assert post(url, first, sign(first)).status_code == 200
    second = sms(ROB, "ack")
    response = post(url, second, sign(second))
    assert response.status_code == 200
    assert "[eu2] ACK by rob (webhook): no open incident to acknowledge" in response.text
    assert nodeos_incident(state_file)["acked_by"] == LUKE


def test_an_ack_of_another_check_leaves_the_nodeos_incident_open(serve, node, state_file):
    _server, url = serve(**node)
    params = sms(LUKE, "ACK endpoint")
    response = post(url, params, sign(params))
    assert response.status_code == 200
    assert "no open incident to acknowledge" in response.text
    assert nodeos_incident(state_file)["acked_by"] is None


def test_a_reply_is_xml_escaped_and_fits_one_sms(serve, node, state_file):
    _server, url = serve(**{**node, "NODE_NAME": "eu2-block-producer-standby"})
    params = sms(LUKE, "ACK <b>&" + "x" * 120)
    response = post(url, params, sign(params))
    assert response.status_code == 200
    message = response.text.split("<Message>")[1].split("</Message>")[0]
    assert "<b>" not in message and "&lt;b&gt;&amp;" in message
    unescaped = message.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    assert len(unescaped) <= 160 and unescaped.endswith("...")
    assert nodeos_incident(state_file)["acked_by"] is None  # no check of that name


# --- what must change nothing ---------------------------------------------------------


def _bad_signatures() -> list[tuple[str, dict[str, str], str]]:
    ack = sms(LUKE, "ACK")
    return [
        ("other-params", ack, sign(sms(LUKE, "on it"))),
        ("other-sender", ack, sign(sms(ROB, "ACK"))),
        ("other-token", ack, sign(ack, token=OTHER_TOKEN)),
        ("other-url", ack, sign(ack, url="https://eu2.example.io/other")),
        ("garbage", ack, "not-a-signature"),
    ]


@pytest.mark.parametrize(
    ("params", "signature"),
    [case[1:] for case in _bad_signatures()],
    ids=[case[0] for case in _bad_signatures()],
)
def test_a_wrongly_signed_ack_is_403_and_changes_nothing(
    serve, node, state_file, params, signature
):
    _server, url = serve(**node)
    before = state_file.read_bytes()
    response = post(url, params, signature)
    assert response.status_code == 403
    assert response.text == "signature does not match TWILIO_WEBHOOK_URL\n"
    assert_no_secret(response.text, signature)
    assert state_file.read_bytes() == before


@pytest.mark.parametrize("signature", [None, ""], ids=["no-header", "empty-header"])
def test_an_unsigned_ack_is_403_and_changes_nothing(serve, node, state_file, signature):
    server, _url = serve(**node)
    before = state_file.read_bytes()
    answer = exchange(server.server_address, raw_post(sms(LUKE, "ACK"), signature))
    assert answer.startswith(b"HTTP/1.0 403 "), answer[:200]
    assert answer.endswith(b"\r\n\r\nsignature does not match TWILIO_WEBHOOK_URL\n")
    assert TOKEN.encode() not in answer
    assert state_file.read_bytes() == before


def test_a_signed_ack_from_a_stranger_gets_no_reply_and_changes_nothing(serve, node, state_file):
    _server, url = serve(**node)
    before = state_file.read_bytes()
    params = sms(STRANGER, "ACK")
    response = post(url, params, sign(params))
    assert response.status_code == 200
    assert response.text == EMPTY_TWIML
    assert state_file.read_bytes() == before


@pytest.mark.parametrize("body", ["on it", "STOP", ""])
def test_a_signed_reply_that_is_not_an_ack_changes_nothing(serve, node, state_file, body):
    _server, url = serve(**node)
    before = state_file.read_bytes()
    params = sms(LUKE, body)
    response = post(url, params, sign(params))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/xml"
    assert response.text == EMPTY_TWIML
    assert state_file.read_bytes() == before


# --- off --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "off",
    [
        {"TWILIO_WEBHOOK_URL": ""},
        {  # a URL, but no token to check signatures with (and so no SMS at all)
            "TWILIO_ACCOUNT_SID": "",
            "TWILIO_AUTH_TOKEN": "",
            "TWILIO_FROM": "",
            "ALERT_TO": "",
        },
    ],
    ids=["no-url", "no-token"],
)
def test_the_webhook_is_404_when_off(serve, node, state_file, off):
    _server, url = serve(**{**node, **off})
    before = state_file.read_bytes()
    params = sms(LUKE, "ACK")
    response = post(url, params, sign(params))
    assert response.status_code == 404
    assert response.text == "webhook off: set TWILIO_WEBHOOK_URL (and the Twilio token)\n"
    assert state_file.read_bytes() == before
    response = requests.post(url + "/health", timeout=5)
    assert response.status_code == 400
    assert response.text == "only GET and HEAD are served\n"


def test_the_webhook_is_only_at_the_path_of_its_url(serve, node, state_file):
    _server, url = serve(**{**node, "TWILIO_WEBHOOK_URL": "https://eu2.example.io/hooks/in"})
    params = sms(LUKE, "ACK")
    wrong = post(url, params, sign(params, url="https://eu2.example.io/hooks/in"))
    assert wrong.status_code == 400
    assert wrong.text == "only GET and HEAD are served, and POST /hooks/in\n"
    assert nodeos_incident(state_file)["acked_by"] is None
    right = post(url, params, sign(params, url="https://eu2.example.io/hooks/in"), path="/hooks/in")
    assert right.status_code == 200 and "acknowledged nodeos" in right.text
    assert nodeos_incident(state_file)["acked_by"] == LUKE


def test_get_of_the_webhook_path_is_still_404(serve, node):
    _server, url = serve(**node)
    response = requests.get(url + "/twilio/sms", timeout=5)
    assert response.status_code == 404 and response.text.startswith("not found")


# --- the request's framing and bounds -------------------------------------------------


def test_no_content_length_is_411(serve, node, state_file):
    server, _url = serve(**node)
    before = state_file.read_bytes()
    params = sms(LUKE, "ACK")
    request = raw_post(params, sign(params), **{"Content-Length": ""})
    assert b"Content-Length" not in request
    answer = exchange(server.server_address, request)
    assert answer.startswith(b"HTTP/1.0 411 "), answer[:200]
    assert b"Content-Length required" in answer
    assert state_file.read_bytes() == before


def test_a_chunked_body_is_411_and_with_a_content_length_too_400(serve, node):
    server, _url = serve(**node)
    params = sms(LUKE, "ACK")
    body = urlencode(params).encode()
    chunked = (
        b"POST /twilio/sms HTTP/1.1\r\nContent-Type: " + FORM.encode() + b"\r\n"
        b"X-Twilio-Signature: " + sign(params).encode() + b"\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    )
    assert exchange(server.server_address, chunked).startswith(b"HTTP/1.0 411 ")
    both = raw_post(params, sign(params), **{"Transfer-Encoding": "chunked"})
    assert exchange(server.server_address, both).startswith(b"HTTP/1.0 400 ")


def test_a_body_over_16_kib_is_413_before_it_is_read(serve, node, state_file):
    server, _url = serve(**node)
    before = state_file.read_bytes()
    params = sms(LUKE, "ACK " + "x" * 17_000)
    request = raw_post(params, sign(params))
    assert len(request.partition(b"\r\n\r\n")[2]) > 16 * 1024
    answer = exchange(server.server_address, request)
    assert answer.startswith(b"HTTP/1.0 413 "), answer[:200]
    assert b"larger than 16384 bytes" in answer
    assert state_file.read_bytes() == before


def test_a_body_of_exactly_16_kib_is_read(serve, node, state_file):
    server, _url = serve(**node)
    params = sms(LUKE, "ACK")
    params["Padding"] = ""
    params["Padding"] = "x" * (16 * 1024 - len(urlencode(params)))
    request = raw_post(params, sign(params))
    assert len(request.partition(b"\r\n\r\n")[2]) == 16 * 1024
    answer = exchange(server.server_address, request)
    assert answer.startswith(b"HTTP/1.0 200 "), answer[:300]
    assert nodeos_incident(state_file)["acked_by"] == LUKE


def test_a_form_of_another_type_is_415(serve, node, state_file):
    server, _url = serve(**node)
    before = state_file.read_bytes()
    params = sms(LUKE, "ACK")
    request = raw_post(params, sign(params), **{"Content-Type": "application/json"})
    answer = exchange(server.server_address, request)
    assert answer.startswith(b"HTTP/1.0 415 "), answer[:200]
    assert state_file.read_bytes() == before


def test_header_names_are_read_in_any_case(serve, node, state_file):
    server, _url = serve(**node)
    params = sms(LUKE, "ACK")
    body = urlencode(params).encode()
    request = (
        b"POST /twilio/sms HTTP/1.1\r\ncontent-type: " + FORM.encode() + b"; charset=utf-8\r\n"
        b"CONTENT-LENGTH: %d\r\nx-twilio-SIGNATURE: "
        % len(body)
        + sign(params).encode()
        + b"\r\n\r\n"
        + body
    )
    answer = exchange(server.server_address, request)
    assert answer.startswith(b"HTTP/1.0 200 "), answer[:300]
    assert nodeos_incident(state_file)["acked_by"] == LUKE


def test_a_body_sent_in_pieces_within_the_deadline_is_read(serve, node, state_file):
    server, _url = serve(**node, head_deadline_seconds=3.0)
    params = sms(LUKE, "ACK")
    answer = exchange(server.server_address, raw_post(params, sign(params)), pause=0.5)
    assert answer.startswith(b"HTTP/1.0 200 "), answer[:300]
    assert nodeos_incident(state_file)["acked_by"] == LUKE


def test_a_body_that_comes_after_the_head_deadline_is_dropped(serve, node, state_file):
    server, url = serve(**node, head_deadline_seconds=0.5)
    before = state_file.read_bytes()
    params = sms(LUKE, "ACK")
    started = time.monotonic()
    answer = exchange(server.server_address, raw_post(params, sign(params)), pause=1.5)
    assert answer == b""  # dropped, as a head that never ends is
    assert time.monotonic() - started < 5
    assert server.timed_out_heads == 1
    assert state_file.read_bytes() == before
    assert requests.get(url + "/status", timeout=5).status_code == 200


def test_a_body_longer_than_its_content_length_is_cut_at_it(serve, node, state_file):
    """What follows the announced length is not part of the form the signature covers."""
    server, _url = serve(**node)
    params = sms(LUKE, "ACK")
    request = raw_post(params, sign(params)) + b"&Unsigned=1"
    answer = exchange(server.server_address, request)
    assert answer.startswith(b"HTTP/1.0 200 "), answer[:300]
    assert nodeos_incident(state_file)["acked_by"] == LUKE


def test_a_malformed_header_name_in_a_post_is_400(serve, node):
    server, _url = serve(**node)
    params = sms(LUKE, "ACK")
    request = raw_post(params, sign(params)).replace(b"Content-Length:", b"Content-Length :")
    assert exchange(server.server_address, request).startswith(b"HTTP/1.0 400 ")


# --- the state cannot be written ---------------------------------------------------------


def test_an_ack_that_cannot_be_recorded_is_503_with_the_reason(serve, node, state_file):
    _server, url = serve(**node)
    before = state_file.read_bytes()
    Path(str(state_file) + ".lock").unlink(missing_ok=True)
    Path(str(state_file) + ".lock").mkdir()  # the run lock cannot be opened
    params = sms(LUKE, "ACK")
    signature = sign(params)
    response = post(url, params, signature)
    assert response.status_code == 503
    assert response.text.startswith("ACK not recorded: ")
    assert "lock" in response.text
    assert_no_secret(response.text, signature)
    assert state_file.read_bytes() == before
