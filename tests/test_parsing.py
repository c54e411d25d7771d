"""Parsing real nodeos bodies: get_info of every version, db_size, error envelopes."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from check_status.probes.http import describe_error_body, describe_non_json
from check_status.probes.nodeos import (
    BadField,
    DbSize,
    as_number,
    parse_block_time,
    parse_db_size,
    parse_get_info,
)

FIXTURES = Path(__file__).parent / "fixtures" / "nodeos"
SHARED_FIXTURES = Path("/work/shared/fixtures/nodeos")


def _fixtures_dir() -> Path:
    if not any(FIXTURES.glob("get_info_*.json")) and SHARED_FIXTURES.is_dir():
        FIXTURES.mkdir(parents=True, exist_ok=True)
        for source in SHARED_FIXTURES.glob("*.json"):
            shutil.copy(source, FIXTURES / source.name)
    return FIXTURES


def load(name: str) -> Any:
    return json.loads((_fixtures_dir() / name).read_text())


# What each real body must parse to. A new get_info fixture without a row here fails
# test_every_get_info_fixture_has_a_row, so none is left untested.
EOS = "aca376f206b8fc25a6ed44dbdc66547c36c6c33e3a119ffbeaef943642f0e906"
GET_INFO = {
    "get_info_eosio_v1.0_eos_mainnet_stale_head.json": (
        EOS,
        1027926,
        1027597,
        datetime(2018, 6, 16, 9, 56, 38, tzinfo=UTC),
        "cypherglasss",
        "843ed645",  # 1.0 has no server_version_string
    ),
    "get_info_eosio_v1.3.0_testnet.json": (
        "687fa513e18843ad3e820744f4ffcf93b1354036d80737db8dc444fe4b15ad17",
        25260035,
        25259987,
        datetime(2019, 2, 21, 18, 31, 41, 500_000, tzinfo=UTC),
        "blkproducer2",
        "v1.3.0",
    ),
    "get_info_eosio_v2.0.0-rc2_local_single_node.json": (
        "cf057bbfb72640471fd910bcb67639c22df9f92470936cddc1ade0e2f2e7dc4f",
        134,
        133,
        datetime(2019, 11, 18, 22, 13, 10, 500_000, tzinfo=UTC),
        "eosio",
        "v2.0.0-rc2",
    ),
    "get_info_leap_v4.0.4_eos_mainnet.json": (
        EOS,
        333261268,
        333260936,
        datetime(2023, 9, 27, 12, 51, 57, 500_000, tzinfo=UTC),
        "eoseouldotio",
        "v4.0.4",
    ),
    "get_info_spring_v1.0.1_eos_mainnet.json": (
        EOS,
        399277762,
        399277760,
        datetime(2024, 10, 14, 2, 30, 34, tzinfo=UTC),
        "big.one",
        "v1.0.1",
    ),
}


def test_every_get_info_fixture_has_a_row() -> None:
    names = {path.name for path in _fixtures_dir().glob("get_info_*.json")}
    assert names, f"no get_info fixtures in {FIXTURES}"
    assert names == set(GET_INFO)


@pytest.mark.parametrize("name", sorted(GET_INFO))
def test_parse_get_info_fixture(name: str) -> None:
    chain_id, head, lib, head_time, producer, version = GET_INFO[name]
    parsed = parse_get_info(load(name), 12.5)
    assert parsed.chain_id == chain_id
    assert parsed.head_block_num == head
    assert parsed.last_irreversible_block_num == lib
    assert parsed.head_block_time == head_time
    assert parsed.head_block_time.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert parsed.head_block_producer == producer
    assert parsed.server_version == version
    assert parsed.response_ms == 12.5


def test_numbers_as_strings_are_accepted() -> None:
    body = load("get_info_leap_v4.0.4_eos_mainnet.json")
    body["head_block_num"] = "333261268"
    body["last_irreversible_block_num"] = " 333260936 "
    parsed = parse_get_info(body, 1.0)
    assert parsed.head_block_num == 333261268
    assert parsed.last_irreversible_block_num == 333260936


def test_chain_id_is_lowercased() -> None:
    body = load("get_info_spring_v1.0.1_eos_mainnet.json")
    body["chain_id"] = EOS.upper()
    assert parse_get_info(body, 1.0).chain_id == EOS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2018-06-16T09:56:38", datetime(2018, 6, 16, 9, 56, 38, tzinfo=UTC)),
        ("2023-09-27T12:51:57.500", datetime(2023, 9, 27, 12, 51, 57, 500_000, tzinfo=UTC)),
        ("2023-09-27T12:51:57.500Z", datetime(2023, 9, 27, 12, 51, 57, 500_000, tzinfo=UTC)),
        (" 2024-10-14T02:30:34.000 ", datetime(2024, 10, 14, 2, 30, 34, tzinfo=UTC)),
    ],
)
def test_parse_block_time_is_utc(text: str, expected: datetime) -> None:
    parsed = parse_block_time(text)
    assert parsed == expected
    assert parsed.tzinfo is not None
    assert parsed.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


@pytest.fixture
def seoul_time_zone() -> Iterator[None]:
    """The process runs at UTC+9, as a server in Korea might."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Seoul"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


@pytest.mark.usefixtures("seoul_time_zone")
def test_block_time_does_not_depend_on_the_local_time_zone() -> None:
    # Prove the zone really changed, or this test could not fail.
    assert time.localtime(0).tm_hour == 9
    parsed = parse_get_info(load("get_info_eosio_v1.0_eos_mainnet_stale_head.json"), 1.0)
    assert parsed.head_block_time == datetime(2018, 6, 16, 9, 56, 38, tzinfo=UTC)
    assert parsed.head_block_time.timestamp() == 1529142998


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("head_block_num", True, "not a number"),
        ("head_block_num", [1, 2], "not a number"),
        ("head_block_num", {"n": 1}, "not a number"),
        ("head_block_num", "abc", "not a number"),
        ("head_block_num", "", "not a number"),
        ("head_block_num", "-5", "not a number"),
        ("head_block_num", 1.5, "not a number"),
        ("head_block_num", None, "not a number"),
        ("head_block_num", -1, "out of range"),
        ("head_block_num", 2**64, "out of range"),
        ("head_block_num", str(2**64), "out of range"),
        ("last_irreversible_block_num", False, "not a number"),
        ("last_irreversible_block_num", "12abc", "not a number"),
        ("last_irreversible_block_num", -300, "out of range"),
        ("last_irreversible_block_num", 10**30, "out of range"),
    ],
)
def test_bad_numbers_raise_bad_field_naming_the_field(
    field: str, value: object, fragment: str
) -> None:
    body = load("get_info_spring_v1.0.1_eos_mainnet.json")
    body[field] = value
    with pytest.raises(BadField) as raised:
        parse_get_info(body, 1.0)
    assert field in str(raised.value)
    assert fragment in str(raised.value)


@pytest.mark.parametrize("value", ["\u00b2", "9" * 5000], ids=["superscript-two", "5000-digits"])
def test_digit_strings_int_cannot_read_raise_bad_field(value: str) -> None:
    try:
        as_number({"head_block_num": value}, "head_block_num")
    except BadField as error:
        assert "head_block_num" in str(error)
    except ValueError as error:
        raise AssertionError(f"plain {type(error).__name__}: {str(error)[:60]}") from None
    else:
        raise AssertionError("accepted")


@pytest.mark.parametrize("field", ["head_block_num", "last_irreversible_block_num"])
def test_missing_number_names_the_field(field: str) -> None:
    body = load("get_info_spring_v1.0.1_eos_mainnet.json")
    del body[field]
    with pytest.raises(BadField, match=f"missing {field}"):
        parse_get_info(body, 1.0)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"head_block_time": "yesterday"}, "head_block_time"),
        ({"head_block_time": 1529142998}, "head_block_time"),
        ({"head_block_time": "2018-06-16 09:56:38+09:00"}, "head_block_time"),
        ({"chain_id": None}, "missing chain_id"),
        ({"chain_id": 42}, "chain_id is not a string"),
        ({"chain_id": ""}, "chain_id"),
    ],
)
def test_bad_fields_raise_bad_field(change: dict[str, Any], fragment: str) -> None:
    body = load("get_info_leap_v4.0.4_eos_mainnet.json")
    body.update(change)
    with pytest.raises(BadField) as raised:
        parse_get_info(body, 1.0)
    assert fragment in str(raised.value)


@pytest.mark.parametrize("body", [None, [], "get_info", 42])
def test_get_info_body_not_an_object(body: object) -> None:
    with pytest.raises(BadField, match="not a JSON object"):
        parse_get_info(body, 1.0)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"free_bytes": 10, "used_bytes": 90, "size": 100}, DbSize(90, 100)),
        (
            {"free_bytes": "1019215872", "used_bytes": "54525952", "size": "1073741824"},
            DbSize(54525952, 1073741824),
        ),
        ({"used_bytes": "5", "size": 1073741824, "indices": []}, DbSize(5, 1073741824)),
    ],
)
def test_parse_db_size(body: dict[str, Any], expected: DbSize) -> None:
    assert parse_db_size(body) == expected


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"used_bytes": 1, "size": 0}, "size is 0"),
        ({"used_bytes": 1}, "missing size"),
        ({"size": 10}, "missing used_bytes"),
        ({"used_bytes": "lots", "size": 10}, "used_bytes"),
        (["not", "an", "object"], "not a JSON object"),
    ],
)
def test_parse_db_size_bad(body: Any, fragment: str) -> None:
    with pytest.raises(BadField) as raised:
        parse_db_size(body)
    assert fragment in str(raised.value)


# --- error bodies -----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "words", "detail"),
    [
        # "exception: unspecified" says nothing: the detail does, and it is free text.
        (load("error_404_unknown_endpoint_leap_v3.2.0.json"), 404, "Not Found", "Unknown Endpoint"),
        (
            load("error_500_timeout_exception_http_max_response_time.json"),
            500,
            "timeout_exception",
            "deadline 2020-02-20T04:02:21.564 exceeded by 21us",
        ),
        ({"message": "NODEOS_UNREACHABLE", "code": 503}, 503, "NODEOS_UNREACHABLE", ""),
        (
            {
                "code": 500,
                "message": "Internal Service Error",
                "error": {"code": 0, "name": "exception", "what": "unspecified", "details": []},
            },
            500,
            "Internal Server Error",  # our phrase for 500, not the server's
            "Internal Service Error",
        ),
        (None, 400, "(empty body)", ""),
        # A hostile body: its words never become the texted part.
        (
            {"message": "call +1 900 555 0100 now"},
            503,
            "Service Unavailable",
            "call +1 900 555 0100 now",
        ),
        ({"message": "call19005550100"}, 503, "Service Unavailable", "call19005550100"),
        ({"message": "CALL_1_900_555_0199"}, 503, "Service Unavailable", "CALL_1_900_555_0199"),
        (
            {"message": "visit_evil_example_com_to_fix"},
            503,
            "Service Unavailable",
            "visit_evil_example_com_to_fix",
        ),
        (
            {"error": {"name": "eosio_assert_message_exception", "what": "assertion failure"}},
            500,
            "eosio_assert_message_exception",
            "assertion failure",
        ),
    ],
)
def test_describe_error_body(body: Any, status: int, words: str, detail: str) -> None:
    assert describe_error_body(body, status) == (words, detail)


NGINX_502 = b"""<html>\r
<head><title>502 Bad Gateway</title></head>\r
<body>\r
<center><h1>502 Bad Gateway</h1></center>\r
<hr><center>nginx/1.18.0 (Ubuntu)</center>\r
</body>\r
</html>\r
"""


@pytest.mark.parametrize(
    ("raw", "content_type", "expected"),
    [
        (NGINX_502, "text/html", ("not JSON (HTML page)", "502 Bad Gateway")),
        (b"<html><body>down</body></html>", "", ("not JSON (HTML page)", "")),
        (b"", "text/plain", ("(empty body)", "")),
        (b"  \n", "", ("(empty body)", "")),
        (b"Service Unavailable", "text/plain", ("not JSON", "Service Unavailable")),
        (
            b"<title>\x1b]52;c;ZXZpbA==\x07</title>",
            "text/html",
            ("not JSON (HTML page)", "\ufffd]52;c;ZXZpbA==\ufffd"),
        ),
    ],
)
def test_describe_non_json(raw: bytes, content_type: str, expected: tuple[str, str]) -> None:
    assert describe_non_json(raw, content_type) == expected
