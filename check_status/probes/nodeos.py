"""SHELL + parsing: get_info and db_size from a nodeos API, read into plain values.

nodeos quirks handled here, once, so no check has to think about them:
- numbers above 2^32 arrive as JSON strings;
- `head_block_time` is UTC with no zone, with or without milliseconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from check_status.model import ProbeFailure
from check_status.probes.http import HttpReply, get_json
from check_status.remote_text import clean

GET_INFO_PATH = "/v1/chain/get_info"
DB_SIZE_PATH = "/v1/db_size/get"

# What nodeos sends in these fields, and so all a check may repeat of them.
_CHAIN_ID = re.compile(r"[0-9a-fA-F]{64}")
_ACCOUNT = re.compile(r"[a-z1-5.]{1,13}")

# Block numbers are uint32 in nodeos; sizes are uint64.
_MAX_UINT64 = 2**64 - 1


@dataclass(frozen=True)
class ChainInfo:
    """The part of get_info that every nodeos version since 1.0 sends."""

    chain_id: str
    head_block_num: int
    head_block_time: datetime
    last_irreversible_block_num: int
    head_block_producer: str
    server_version: str
    response_ms: float


@dataclass(frozen=True)
class DbSize:
    used_bytes: int
    size: int


@dataclass(frozen=True)
class DbSizeNotEnabled:
    """db_size_api_plugin is not loaded: common, and not a failure."""


class BadField(ValueError):
    """A field nodeos should have sent is missing or malformed.

    The message is ours and may be texted ("head_block_num is not a number");
    the value the server sent is only `detail`, shown by -v.
    """

    def __init__(self, message: str, detail: Any = "") -> None:
        super().__init__(message)
        self.detail = clean(repr(detail)[:60]) if detail != "" else ""


def as_number(body: dict[str, Any], field: str) -> int:
    """A non-negative integer sent as a JSON number or a numeric string."""
    if field not in body:
        raise BadField(f"missing {field}")
    value = body[field]
    if isinstance(value, bool):
        raise BadField(f"{field} is not a number", value)
    if isinstance(value, str):
        text = value.strip()
        # isascii: "²".isdigit() is True; the length cap keeps int() from refusing it.
        if not (text.isascii() and text.isdigit() and len(text) <= 20):
            raise BadField(f"{field} is not a number", value)
        value = int(text)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise BadField(f"{field} is not a number", value)
    if not 0 <= value <= _MAX_UINT64:
        raise BadField(f"{field} is out of range", value)
    return value


def parse_block_time(text: Any) -> datetime:
    """`2023-09-27T12:51:57.500` or `2018-06-16T09:56:38`, always UTC.

    nodeos writes no zone. Reading it as local time gets the lag wrong by the
    server's UTC offset, a bug two published monitors have.
    """
    if not isinstance(text, str):
        raise BadField("head_block_time is not a time", text)
    cleaned = text.strip()
    # fromisoformat, not strptime: strptime's first call costs ~3 ms of imports
    # and regex compiling, paid by every cron run. The length check keeps it to
    # the shapes nodeos writes (date, "T", time, optional fraction, optional Z).
    if not 19 <= len(cleaned) <= 27 or cleaned[10:11] != "T":
        raise BadField("head_block_time is not a time", text)
    try:
        moment = datetime.fromisoformat(cleaned.removesuffix("Z"))
    except ValueError:
        raise BadField("head_block_time is not a time", text) from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # "0001-01-01T00:00:00+05:00" has no UTC form
        raise BadField("head_block_time is not a time", text) from None


def parse_get_info(body: Any, response_ms: float) -> ChainInfo:
    if not isinstance(body, dict):
        raise BadField("get_info body is not a JSON object")
    chain_id = body.get("chain_id")
    if not isinstance(chain_id, str) or not chain_id:
        raise BadField("missing chain_id" if chain_id is None else "chain_id is not a string")
    if not _CHAIN_ID.fullmatch(chain_id):
        raise BadField("chain_id is not a chain id (64 hex digits)")
    version = body.get("server_version_string") or body.get("server_version") or "?"
    producer = body.get("head_block_producer")
    return ChainInfo(
        chain_id=chain_id.lower(),
        head_block_num=as_number(body, "head_block_num"),
        head_block_time=parse_block_time(body.get("head_block_time")),
        last_irreversible_block_num=as_number(body, "last_irreversible_block_num"),
        # An account name is 1-13 of a-z, 1-5 and dots: anything else is not one.
        head_block_producer=producer
        if isinstance(producer, str) and _ACCOUNT.fullmatch(producer)
        else "?",
        server_version=str(version)[:40],
        response_ms=response_ms,
    )


def fetch_chain_info(base_url: str, timeout: float) -> ChainInfo | ProbeFailure:
    reply = get_json(base_url + GET_INFO_PATH, timeout)
    if isinstance(reply, ProbeFailure):
        return reply
    try:
        return parse_get_info(reply.body, reply.elapsed_ms)
    except BadField as error:
        return ProbeFailure(f"bad get_info: {error}", reply.status, detail=error.detail)


def parse_db_size(body: Any) -> DbSize:
    if not isinstance(body, dict):
        raise BadField("db_size body is not a JSON object")
    size = as_number(body, "size")
    used = as_number(body, "used_bytes")
    if size == 0:
        raise BadField("size is 0")
    return DbSize(used_bytes=used, size=size)


def fetch_db_size(base_url: str, timeout: float) -> DbSize | DbSizeNotEnabled | ProbeFailure:
    reply = get_json(base_url + DB_SIZE_PATH, timeout)
    if isinstance(reply, ProbeFailure):
        if reply.http_status == 404 and "Unknown Endpoint" in str(reply.body):
            return DbSizeNotEnabled()
        return reply
    assert isinstance(reply, HttpReply)
    try:
        return parse_db_size(reply.body)
    except BadField as error:
        return ProbeFailure(f"bad db_size: {error}", reply.status, detail=error.detail)
