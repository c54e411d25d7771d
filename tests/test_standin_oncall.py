"""The Twilio stand-in's Messages list and Calls, driven by the real twilio client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests

from tests.standins import TwilioStandIn
from tests.test_standins import SID, TOKEN, twilio_client  # helpers, not tests

OURS = "+15005550006"
OTHER_LINE = "+15005550007"
ONCALL = "+14155550101"
BACKUP = "+14155550102"
TWIML = "<Response><Say>hi</Say></Response>"


@pytest.fixture
def twilio() -> Iterator[TwilioStandIn]:
    with TwilioStandIn() as standin:
        yield standin


# --- listing messages ------------------------------------------------------------------


def _inbox(twilio: TwilioStandIn) -> dict[str, dict]:
    day = datetime(2026, 12, 2, tzinfo=UTC)
    return {
        "old": twilio.add_inbound(ONCALL, "old ack", day - timedelta(hours=3)),
        "ack": twilio.add_inbound(ONCALL, "ACK", day + timedelta(hours=2, minutes=10)),
        "later": twilio.add_inbound(BACKUP, "on it", day + timedelta(hours=2, minutes=30)),
        "elsewhere": twilio.add_inbound(
            ONCALL, "wrong line", day + timedelta(hours=2, minutes=40), to=OTHER_LINE
        ),
    }


def test_add_inbound_makes_an_sm_sid_and_stores_the_message(twilio: TwilioStandIn) -> None:
    when = datetime(2026, 12, 2, 2, 10, tzinfo=UTC)
    message = twilio.add_inbound(ONCALL, "ACK", when)
    assert message["sid"].startswith("SM") and len(message["sid"]) == 34
    int(message["sid"][2:], 16)  # hex
    assert message == {
        "sid": message["sid"],
        "from": ONCALL,
        "to": OURS,
        "body": "ACK",
        "date_sent": when,
    }
    assert twilio.inbound == [message]
    assert twilio.add_inbound(ONCALL, "again", when)["sid"] != message["sid"]


def test_list_to_and_date_sent_after_datetime(twilio: TwilioStandIn) -> None:
    inbox = _inbox(twilio)
    client = twilio_client(twilio.url)

    after = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
    found = client.messages.list(to=OURS, date_sent_after=after)

    # newest first; the 23:00 one (before), and the one to the other line, left out
    assert [m.sid for m in found] == [inbox["later"]["sid"], inbox["ack"]["sid"]]
    newest, oldest = found
    assert (newest.from_, newest.body, newest.to) == (BACKUP, "on it", OURS)
    assert (oldest.from_, oldest.body) == (ONCALL, "ACK")
    assert oldest.date_sent == datetime(2026, 12, 2, 2, 10, tzinfo=UTC)
    assert oldest.date_sent.tzinfo is not None
    assert oldest.date_created == oldest.date_sent
    assert oldest.direction == "inbound" and oldest.status == "received"
    assert oldest.account_sid == SID and oldest.price is None
    assert oldest.num_segments == "1"
    assert oldest.uri == f"/2010-04-01/Accounts/{SID}/Messages/{oldest.sid}.json"

    assert twilio.listings == [{"To": OURS, "DateSent>": "2026-12-02T02:00:00Z"}]


def test_list_date_sent_after_a_day_string_starts_at_midnight_utc(
    twilio: TwilioStandIn,
) -> None:
    inbox = _inbox(twilio)
    client = twilio_client(twilio.url)

    found = client.messages.list(to=OURS, date_sent_after="2026-12-02")
    assert [m.body for m in found] == ["on it", "ACK"]
    assert [m.sid for m in found] == [inbox["later"]["sid"], inbox["ack"]["sid"]]

    everything = client.messages.list(date_sent_after="2026-12-01")
    assert [m.body for m in everything] == ["wrong line", "on it", "ACK", "old ack"]

    assert twilio.listings == [
        {"To": OURS, "DateSent>": "2026-12-02"},
        {"DateSent>": "2026-12-01"},
    ]


def test_list_from_before_and_day_filters(twilio: TwilioStandIn) -> None:
    _inbox(twilio)
    client = twilio_client(twilio.url)

    assert [m.body for m in client.messages.list(from_=BACKUP)] == ["on it"]
    before = client.messages.list(to=OURS, date_sent_before="2026-12-01")
    assert [m.body for m in before] == ["old ack"]  # on or before: the whole of Dec 1
    at = datetime(2026, 12, 2, 2, 10, tzinfo=UTC)
    assert [m.body for m in client.messages.list(to=OURS, date_sent_before=at)] == [
        "ACK",
        "old ack",
    ]
    assert [m.body for m in client.messages.list(to=OURS, date_sent="2026-12-02")] == [
        "on it",
        "ACK",
    ]
    assert [m.body for m in client.messages.list(to=OURS, date_sent_after=at)] == [
        "on it",
        "ACK",
    ]  # on or after: the message of that very second is in
    assert twilio.listings[0] == {"From": BACKUP}
    assert len(twilio.listings) == 5


def test_list_page_size_keeps_the_newest(twilio: TwilioStandIn) -> None:
    _inbox(twilio)
    client = twilio_client(twilio.url)
    page = client.messages.page(page_size=2)
    assert [m.body for m in page] == ["wrong line", "on it"]
    assert page.next_page_url is None
    assert twilio.listings == [{"PageSize": "2"}]


def test_list_answer_is_twilio_shaped(twilio: TwilioStandIn) -> None:
    twilio.add_inbound(ONCALL, "ACK", datetime(2026, 12, 2, 2, 10, tzinfo=UTC))
    response = requests.get(
        f"{twilio.url}/2010-04-01/Accounts/{SID}/Messages.json",
        params={"To": OURS, "PageSize": "20"},
        auth=(SID, TOKEN),
        timeout=2,
    )
    assert response.status_code == 200
    page = response.json()
    assert page["next_page_uri"] is None and page["previous_page_uri"] is None
    assert (page["page"], page["page_size"], page["start"], page["end"]) == (0, 20, 0, 0)
    assert page["uri"].startswith(f"/2010-04-01/Accounts/{SID}/Messages.json?")
    assert page["first_page_uri"] == page["uri"]
    (message,) = page["messages"]
    assert message["date_sent"] == "Wed, 02 Dec 2026 02:10:00 +0000"
    assert message["date_updated"] == message["date_created"] == message["date_sent"]


def test_list_includes_accepted_outbound_messages(twilio: TwilioStandIn) -> None:
    client = twilio_client(twilio.url)
    twilio.add_inbound(ONCALL, "ACK", datetime(2020, 1, 1, tzinfo=UTC))
    sent = client.messages.create(to=ONCALL, from_=OURS, body="node down")
    (accepted,) = twilio.messages
    assert "date_sent" not in accepted  # the recorded shape stays as it was

    found = client.messages.list()
    assert [(m.sid, m.direction) for m in found] == [
        (sent.sid, "outbound-api"),
        (twilio.inbound[0]["sid"], "inbound"),
    ]
    outbound = found[0]
    assert (outbound.from_, outbound.to, outbound.body) == (OURS, ONCALL, "node down")
    assert abs(outbound.date_sent - datetime.now(UTC)) < timedelta(seconds=5)
    assert [m.sid for m in client.messages.list(to=OURS)] == [twilio.inbound[0]["sid"]]


def test_inbound_set_through_configure(twilio: TwilioStandIn) -> None:
    when = datetime(2026, 12, 2, 2, 10)  # naive: UTC
    twilio.configure(inbound=[{"from": ONCALL, "body": "ACK", "date_sent": when}])
    client = twilio_client(twilio.url)
    first = client.messages.list(to=OURS)
    (message,) = first
    assert message.sid.startswith("SM") and message.from_ == ONCALL
    assert message.date_sent == when.replace(tzinfo=UTC)
    assert [m.sid for m in client.messages.list()] == [message.sid]  # stable sid


def _page_error(call) -> tuple[int, dict]:
    """A list answered with an error: twilio 9.13 raises a plain TwilioException("Unable to
    fetch page", response) there, NOT TwilioRestException; the response has the status."""
    from twilio.base.exceptions import TwilioException, TwilioRestException

    with pytest.raises(TwilioException) as caught:
        call()
    assert not isinstance(caught.value, TwilioRestException)
    message, response = caught.value.args
    assert message == "Unable to fetch page"
    return response.status_code, json.loads(response.text)


def test_list_wrong_token_is_401(twilio: TwilioStandIn) -> None:
    twilio.add_inbound(ONCALL, "ACK", datetime(2026, 12, 2, tzinfo=UTC))
    client = twilio_client(twilio.url, token="wrong")
    status, body = _page_error(lambda: client.messages.list(to=OURS))
    assert status == 401 and body["code"] == 20003
    assert twilio.listings == [{"To": OURS}]  # recorded whatever the answer


def test_list_error500_mode(twilio: TwilioStandIn) -> None:
    twilio.add_inbound(ONCALL, "ACK", datetime(2026, 12, 2, tzinfo=UTC))
    twilio.configure(mode="error500")
    client = twilio_client(twilio.url)
    status, body = _page_error(lambda: client.messages.list(to=OURS))
    assert status == 500 and body["code"] == 20500
    assert len(twilio.listings) == 1


def test_list_bad_date_is_400(twilio: TwilioStandIn) -> None:
    client = twilio_client(twilio.url)
    status, body = _page_error(lambda: client.messages.list(date_sent_after="yesterday"))
    assert status == 400 and "DateSent>" in body["message"]


def test_post_messages_and_other_gets_still_work(twilio: TwilioStandIn) -> None:
    client = twilio_client(twilio.url)
    assert client.api.v2010.accounts(SID).fetch().status == "active"
    numbers = client.incoming_phone_numbers.list(phone_number=OURS)
    assert [n.phone_number for n in numbers] == [OURS]
    assert client.messages.create(to=ONCALL, from_=OURS, body="x").sid.startswith("SM")
    assert twilio.listings == []  # none of these is a Messages list


# --- calls ---------------------------------------------------------------------------


def test_call_is_recorded_with_its_twiml(twilio: TwilioStandIn) -> None:
    call = twilio_client(twilio.url).calls.create(to=ONCALL, from_=OURS, twiml=TWIML)
    assert call.sid.startswith("CA") and len(call.sid) == 34
    # twilio 9.13's CallInstance has ``_from`` (MessageInstance has ``from_``)
    assert (call.to, call._from, call.status, call.direction) == (
        ONCALL,
        OURS,
        "queued",
        "outbound-api",
    )
    assert call.date_created.tzinfo is not None
    assert abs(call.date_created - datetime.now(UTC)) < timedelta(seconds=5)
    assert twilio.wait_for_calls(1) == [
        {
            "to": ONCALL,
            "from": OURS,
            "twiml": TWIML,
            "url": None,
            "account_sid": SID,
            "auth_ok": True,
            "sid": call.sid,
        }
    ]
    assert [a["status"] for a in twilio.call_attempts] == [201]
    assert twilio.messages == [] and twilio.attempts == []  # a call is not a text


def test_call_with_url(twilio: TwilioStandIn) -> None:
    url = "https://example.com/voice.xml"
    twilio_client(twilio.url).calls.create(to=ONCALL, from_=OURS, url=url)
    (call,) = twilio.calls
    assert call["url"] == url and call["twiml"] is None


def test_call_invalid_to_raises_with_the_code(twilio: TwilioStandIn) -> None:
    from twilio.base.exceptions import TwilioRestException

    twilio.configure(invalid_numbers={"+1555"}, call_errors={BACKUP: 13224})
    client = twilio_client(twilio.url)
    with pytest.raises(TwilioRestException) as caught:
        client.calls.create(to="+1555", from_=OURS, twiml=TWIML)
    assert caught.value.status == 400 and caught.value.code == 21211
    assert "+1555" in caught.value.msg

    with pytest.raises(TwilioRestException) as caught:
        client.calls.create(to=BACKUP, from_=OURS, twiml=TWIML)
    assert caught.value.code == 13224
    assert "attempting to call, +14155550102, is not valid" in caught.value.msg
    # call_errors are for calls only: a text to that number still goes
    assert client.messages.create(to=BACKUP, from_=OURS, body="x").sid.startswith("SM")

    assert twilio.calls == []
    assert [(a["to"], a["status"]) for a in twilio.call_attempts] == [
        ("+1555", 400),
        (BACKUP, 400),
    ]


def test_call_recipient_and_sender_errors(twilio: TwilioStandIn) -> None:
    from twilio.base.exceptions import TwilioRestException

    twilio.configure(recipient_errors={ONCALL: 21215}, sender_errors={OTHER_LINE: 21210})
    client = twilio_client(twilio.url)
    with pytest.raises(TwilioRestException) as caught:
        client.calls.create(to=ONCALL, from_=OURS, twiml=TWIML)
    assert caught.value.code == 21215 and "not authorized to call" in caught.value.msg
    with pytest.raises(TwilioRestException) as caught:
        client.calls.create(to=BACKUP, from_=OTHER_LINE, twiml=TWIML)
    assert caught.value.code == 21210 and OTHER_LINE in caught.value.msg


@pytest.mark.parametrize(
    ("form", "code", "words"),
    [
        ({"From": OURS, "Twiml": TWIML}, 21201, "No 'To' number is specified"),
        ({"To": ONCALL, "Twiml": TWIML}, 21213, "No 'From' number is specified"),
        ({"To": ONCALL, "From": OURS}, 21205, "Url parameter is required"),
    ],
)
def test_call_missing_fields(twilio: TwilioStandIn, form: dict, code: int, words: str) -> None:
    response = requests.post(
        f"{twilio.url}/2010-04-01/Accounts/{SID}/Calls.json",
        data=form,
        auth=(SID, TOKEN),
        timeout=2,
    )
    assert response.status_code == 400
    assert response.json()["code"] == code and response.json()["message"] == words
    assert twilio.calls == [] and len(twilio.call_attempts) == 1


def test_call_error500_mode(twilio: TwilioStandIn) -> None:
    from twilio.base.exceptions import TwilioRestException

    twilio.configure(mode="error500")
    with pytest.raises(TwilioRestException) as caught:
        twilio_client(twilio.url).calls.create(to=ONCALL, from_=OURS, twiml=TWIML)
    assert caught.value.status == 500
    assert twilio.calls == []
    assert [a["status"] for a in twilio.call_attempts] == [500]


def test_call_wrong_token_is_401(twilio: TwilioStandIn) -> None:
    from twilio.base.exceptions import TwilioRestException

    with pytest.raises(TwilioRestException) as caught:
        twilio_client(twilio.url, token="wrong").calls.create(to=ONCALL, from_=OURS, twiml=TWIML)
    assert caught.value.status == 401
    assert twilio.calls == [] and twilio.call_attempts[0]["auth_ok"] is False


def test_wait_for_calls_times_out_with_what_there_is(twilio: TwilioStandIn) -> None:
    assert twilio.wait_for_calls(1, timeout=0.05) == []
