"""The pipelined Redis client's wire format: commands packed as RESP, replies parsed whole or not at all."""

from __future__ import annotations

import asyncio

import pytest
from redis import exceptions

from llm_gateway.store.resp import _Connection, _Incomplete, pack, parse


def test_a_command_is_an_array_of_bulk_strings() -> None:
    wire = b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n\x00v\r\n$2\r\nPX\r\n$3\r\n300\r\n"
    assert pack(("SET", "k", b"\x00v", "PX", 300)) == wire
    assert pack(("GET", "é")) == b"*2\r\n$3\r\nGET\r\n$2\r\n\xc3\xa9\r\n"


@pytest.mark.parametrize(
    ("wire", "reply"),
    [
        (b":42\r\n", 42),
        (b":-3\r\n", -3),
        (b"+OK\r\n", b"OK"),
        (b"$5\r\nhe\r\nl\r\n", b"he\r\nl"),  # a bulk string is read by its length, CRLF inside and all
        (b"$-1\r\n", None),
        (b"*-1\r\n", None),
        (b"*0\r\n", []),
        (b"*3\r\n:1\r\n$1\r\nx\r\n*2\r\n:2\r\n$-1\r\n", [1, b"x", [2, None]]),
    ],
)
def test_replies_are_parsed_and_the_next_one_located(wire: bytes, reply: object) -> None:
    assert parse(wire + b":7\r\n", 0) == (reply, len(wire))


def test_error_replies_become_redis_py_exceptions() -> None:
    error, _ = parse(b"-NOSCRIPT No matching script\r\n", 0)
    assert isinstance(error, exceptions.NoScriptError)
    error, _ = parse(b"-READONLY You can't write against a read only replica.\r\n", 0)
    assert isinstance(error, exceptions.ReadOnlyError)
    error, _ = parse(b"-ERR wrong number of arguments\r\n", 0)
    assert type(error) is exceptions.ResponseError


@pytest.mark.parametrize("wire", [b":4", b"$5\r\nhel", b"$5\r\nhello\r", b"*2\r\n:1\r\n", b"*2\r\n:1\r\n$3\r\nab"])
def test_a_reply_cut_short_is_incomplete(wire: bytes) -> None:
    with pytest.raises(_Incomplete):
        parse(wire, 0)


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def abort(self) -> None:
        self.aborted = True


async def test_commands_of_one_iteration_go_out_in_one_write_and_replies_in_any_chunks_find_their_callers() -> None:
    connection = _Connection(asyncio.get_running_loop())
    transport = _Transport()
    connection.connection_made(transport)  # type: ignore[arg-type]
    first, second, third = (connection.send(pack(("GET", key))) for key in "abc")
    await asyncio.sleep(0)
    assert transport.written == [pack(("GET", "a")) + pack(("GET", "b")) + pack(("GET", "c"))]
    second.cancel()  # a caller that timed out: its reply is dropped, the others' are not shifted
    for chunk in (b"$1\r\nA", b"\r\n$1\r\nB\r\n$", b"1\r\nC\r\n"):
        connection.data_received(chunk)
    assert (await first, await third) == (b"A", b"C")


async def test_a_lost_connection_fails_every_command_in_flight_and_refuses_new_ones() -> None:
    connection = _Connection(asyncio.get_running_loop())
    connection.connection_made(_Transport())  # type: ignore[arg-type]
    waiting = connection.send(pack(("GET", "a")))
    connection.connection_lost(ConnectionResetError())
    with pytest.raises(exceptions.ConnectionError):
        await waiting
    with pytest.raises(exceptions.ConnectionError):
        connection.send(pack(("GET", "b")))


async def test_a_reply_nobody_asked_for_closes_the_connection() -> None:
    connection = _Connection(asyncio.get_running_loop())
    transport = _Transport()
    connection.connection_made(transport)  # type: ignore[arg-type]
    connection.data_received(b":1\r\n")
    assert transport.aborted and connection.closed is not None


async def test_a_reply_past_the_bound_closes_the_connection_and_fails_its_caller() -> None:
    connection = _Connection(asyncio.get_running_loop(), max_buffered=64)
    transport = _Transport()
    connection.connection_made(transport)  # type: ignore[arg-type]
    waiting = connection.send(pack(("GET", "big")))
    connection.data_received(b"$1000000\r\n" + b"x" * 40)
    assert not transport.aborted  # a long reply on its way is waited for, up to the bound
    connection.data_received(b"x" * 40)
    assert transport.aborted
    with pytest.raises(exceptions.ConnectionError, match="over 64 bytes"):
        await waiting
