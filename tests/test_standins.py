"""Quick checks that the loopback stand-ins behave like the real services."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests

from tests.standins import (
    HangingServer,
    NodeosStandIn,
    TwilioStandIn,
    format_block_time,
    free_port,
    load_fixture,
)

GET_INFO = "/v1/chain/get_info"
DB_SIZE = "/v1/db_size/get"
SID = "AC" + "0" * 32
TOKEN = "test-token"


@pytest.fixture
def nodeos() -> Iterator[NodeosStandIn]:
    with NodeosStandIn() as standin:
        yield standin


@pytest.fixture
def twilio_standin() -> Iterator[TwilioStandIn]:
    with TwilioStandIn() as standin:
        yield standin


def twilio_client(url: str, token: str = TOKEN, timeout: float = 2.0):
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    client = Client(SID, token, http_client=TwilioHttpClient(timeout=timeout))
    client.region = client.edge = None  # environment={} would still read os.environ
    client.api.base_url = url
    return client


def parse_block_time(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- helpers -------------------------------------------------------------------------


def test_format_block_time() -> None:
    dt = datetime(2023, 9, 27, 12, 51, 57, 500_000, tzinfo=UTC)
    assert format_block_time(dt) == "2023-09-27T12:51:57.500"
    assert format_block_time(dt.replace(microsecond=7_999)) == "2023-09-27T12:51:57.007"
    assert format_block_time(datetime(2018, 6, 16, 9, 56, 38), millis=False) == (
        "2018-06-16T09:56:38"
    )


def test_free_port_refuses() -> None:
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{free_port()}{GET_INFO}", timeout=1)


# --- nodeos --------------------------------------------------------------------------


def test_get_info_ok_head_near_now_and_numbers_overridden(nodeos: NodeosStandIn) -> None:
    nodeos.configure(head_block_num=1000, lib_gap=2, chain_id="ab" * 32)
    response = requests.post(nodeos.url + GET_INFO, timeout=2)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["head_block_num"] == 1000
    assert body["last_irreversible_block_num"] == 998
    assert body["chain_id"] == "ab" * 32
    assert body["head_block_id"].startswith(f"{1000:08x}")
    assert body["head_block_producer"] == "eoseouldotio"
    lag = (datetime.now(UTC) - parse_block_time(body["head_block_time"])).total_seconds()
    assert 0.4 <= lag < 1.5
    assert len(body["head_block_time"].rsplit(".", 1)[1]) == 3


def test_get_info_keeps_fixture_gap_and_supports_get(nodeos: NodeosStandIn) -> None:
    original = load_fixture(nodeos.fixture)
    nodeos.head_block_num = 5000
    body = requests.get(nodeos.url + GET_INFO, timeout=2).json()
    gap = original["head_block_num"] - original["last_irreversible_block_num"]
    assert body["last_irreversible_block_num"] == 5000 - gap
    assert nodeos.requests == [("GET", GET_INFO)]
    assert nodeos.get_info_count == 1


def test_get_info_numbers_as_strings_and_no_millis(nodeos: NodeosStandIn) -> None:
    frozen = datetime(2018, 6, 16, 9, 56, 38, tzinfo=UTC)
    nodeos.configure(
        fixture="get_info_eosio_v1.0_eos_mainnet_stale_head.json",
        numbers_as_strings=True,
        head_block_time=frozen,
        millis=False,
    )
    body = requests.post(nodeos.url + GET_INFO, timeout=2).json()
    assert body["head_block_num"] == "1027926"
    assert body["last_irreversible_block_num"] == "1027597"
    assert body["head_block_time"] == "2018-06-16T09:56:38"


def test_html502(nodeos: NodeosStandIn) -> None:
    nodeos.mode = "html502"
    response = requests.get(nodeos.url + GET_INFO, timeout=2)
    assert response.status_code == 502
    assert response.headers["Content-Type"] == "text/html"
    assert "502 Bad Gateway" in response.text


@pytest.mark.parametrize(
    ("mode", "status", "check"),
    [
        ("error404", 404, lambda r: r.json()["error"]["details"][0]["message"]),
        ("error500", 500, lambda r: r.json()["error"]["name"]),
        ("patroneos", 503, lambda r: r.json()["message"]),
        ("empty400", 400, lambda r: r.content),
        ("invalid_utf8", 200, lambda r: r.content),
    ],
)
def test_error_modes(nodeos: NodeosStandIn, mode: str, status: int, check) -> None:
    nodeos.mode = mode
    response = requests.post(nodeos.url + GET_INFO, timeout=2)
    assert response.status_code == status
    assert (
        check(response)
        == {
            "error404": "Unknown Endpoint",
            "error500": "timeout_exception",
            "patroneos": "NODEOS_UNREACHABLE",
            "empty400": b"",
            "invalid_utf8": b'{"chain_id":"\xff\xfe"}',
        }[mode]
    )


def test_db_size_404_when_disabled_200_when_enabled(nodeos: NodeosStandIn) -> None:
    response = requests.get(nodeos.url + DB_SIZE, timeout=2)
    assert response.status_code == 404
    assert response.json()["code"] == 404
    nodeos.db_size_enabled = True
    body = requests.post(nodeos.url + DB_SIZE, timeout=2).json()
    assert int(body["free_bytes"]) + body["used_bytes"] == body["size"] == 1 << 30


def test_unknown_path_404(nodeos: NodeosStandIn) -> None:
    response = requests.post(nodeos.url + "/v1/producer/paused", timeout=2)
    assert response.status_code == 404
    assert json.loads(response.content)["message"] == "Not Found"


def test_hang_times_out_and_stop_is_quick() -> None:
    standin = NodeosStandIn(mode="hang").start()
    try:
        started = time.monotonic()
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.get(standin.url + GET_INFO, timeout=0.5)
        assert time.monotonic() - started < 1.5
    finally:
        started = time.monotonic()
        standin.stop()
        assert time.monotonic() - started < 1.0


def test_hanging_server_times_out() -> None:
    with HangingServer() as server, pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(server.url + GET_INFO, timeout=0.3)


def test_restart_on_same_port(nodeos: NodeosStandIn) -> None:
    port = nodeos.port
    nodeos.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(nodeos.url + GET_INFO, timeout=1)
    nodeos.start()
    assert nodeos.port == port
    assert requests.get(nodeos.url + GET_INFO, timeout=2).status_code == 200


# --- Twilio, through the real client -------------------------------------------------


def test_twilio_real_client_sends(twilio_standin: TwilioStandIn) -> None:
    client = twilio_client(twilio_standin.url)
    message = client.messages.create(to="+15005550006", from_="+15005550001", body="hi")
    assert message.sid.startswith("SM") and len(message.sid) == 34
    assert message.status == "queued"
    assert twilio_standin.messages == [
        {
            "to": "+15005550006",
            "from": "+15005550001",
            "messaging_service_sid": None,
            "body": "hi",
            "account_sid": SID,
            "auth_ok": True,
            "sid": message.sid,
        }
    ]
    account = client.api.v2010.accounts(SID).fetch()
    assert (account.sid, account.status) == (SID, "active")


def test_twilio_invalid_number_21211(twilio_standin: TwilioStandIn) -> None:
    from twilio.base.exceptions import TwilioRestException

    twilio_standin.invalid_numbers.add("+15005550001")
    client = twilio_client(twilio_standin.url)
    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(to="+15005550001", from_="+15005550006", body="hi")
    assert (caught.value.code, caught.value.status) == (21211, 400)
    assert twilio_standin.messages == []
    assert [a["status"] for a in twilio_standin.attempts] == [400]


def test_twilio_bad_token_401(twilio_standin: TwilioStandIn) -> None:
    from twilio.base.exceptions import TwilioRestException

    client = twilio_client(twilio_standin.url, token="wrong")
    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(to="+15005550006", from_="+15005550001", body="hi")
    assert (caught.value.code, caught.value.status) == (20003, 401)
    with pytest.raises(TwilioRestException) as caught:
        client.api.v2010.accounts(SID).fetch()
    assert (caught.value.code, caught.value.status) == (20003, 401)
    assert twilio_standin.messages == []
    assert twilio_standin.attempts[0]["auth_ok"] is False


@pytest.mark.parametrize(
    ("mode", "status", "code"),
    [("error500", 500, 20500), ("error429", 429, 20429), ("html", 502, 502)],
)
def test_twilio_error_modes(twilio_standin: TwilioStandIn, mode: str, status: int, code: int):
    from twilio.base.exceptions import TwilioRestException

    twilio_standin.mode = mode
    with pytest.raises(TwilioRestException) as caught:
        twilio_client(twilio_standin.url).messages.create(
            to="+15005550006", from_="+15005550001", body="hi"
        )
    assert (caught.value.status, caught.value.code) == (status, code)


def test_twilio_problem_json_is_service_exception(twilio_standin: TwilioStandIn) -> None:
    from twilio.base.exceptions import TwilioException, TwilioRestException

    twilio_standin.configure(problem_json=True, recipient_errors={"+15005550004": 21610})
    with pytest.raises(TwilioException) as caught:
        twilio_client(twilio_standin.url).messages.create(
            to="+15005550004", from_="+15005550006", body="hi"
        )
    assert not isinstance(caught.value, TwilioRestException)
    assert (caught.value.status, caught.value.code) == (400, 21610)


def test_twilio_slow_times_out_as_requests_exception(twilio_standin: TwilioStandIn) -> None:
    twilio_standin.mode = "slow"
    client = twilio_client(twilio_standin.url, timeout=0.3)
    with pytest.raises(requests.exceptions.ReadTimeout):
        client.messages.create(to="+15005550006", from_="+15005550001", body="hi")
