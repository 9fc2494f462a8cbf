"""The pipelined Redis client against a real redis-server: scripts, a restart, a frozen server, a database index."""

from __future__ import annotations

import asyncio
import signal

import pytest
from redis import exceptions

from llm_gateway.store.resp import PipelinedRedis, connect_pipelined
from tests.services import RedisServer

pytestmark = pytest.mark.integration

INCR_BY = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


async def test_commands_scripts_and_a_restarted_redis(throwaway_redis: RedisServer) -> None:
    client = connect_pipelined(throwaway_redis.url)
    assert isinstance(client, PipelinedRedis)
    script = client.register_script(INCR_BY)
    try:
        assert await client.set("resp:k", b"\x00blob\r\n", px=60_000)
        replies = await asyncio.gather(*(client.get("resp:k") for _ in range(50)), client.get("resp:none"))
        assert replies == [b"\x00blob\r\n"] * 50 + [None]
        assert await script(keys=["resp:n"], args=[2]) == 2  # NOSCRIPT, then EVAL
        assert await script(keys=["resp:n"], args=[3]) == 5  # EVALSHA
        assert await client.hmget("resp:h", ["a", "b"]) == [None, None]

        throwaway_redis.stop()
        with pytest.raises(exceptions.ConnectionError):
            await client.get("resp:k")
        throwaway_redis.start()  # empty, and without the script
        assert await script(keys=["resp:n"], args=[4]) == 4
    finally:
        await client.aclose()


async def test_a_frozen_redis_times_callers_out_then_the_connection_is_replaced(throwaway_redis: RedisServer) -> None:
    client = PipelinedRedis("127.0.0.1", throwaway_redis.port, stall_seconds=0.3)
    assert await client.set("resp:k", b"v", px=60_000)
    assert throwaway_redis.process is not None
    throwaway_redis.process.send_signal(signal.SIGSTOP)
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await client.get("resp:k")
        await asyncio.sleep(0.3)
        stalled = asyncio.ensure_future(client.get("resp:k"))  # closes the stalled connection, opens another
        await asyncio.sleep(0.1)
    finally:
        throwaway_redis.process.send_signal(signal.SIGCONT)
    try:
        assert await asyncio.wait_for(stalled, 5) == b"v"
        assert await client.get("resp:k") == b"v"
    finally:
        await client.aclose()


async def test_the_url_selects_the_database(throwaway_redis: RedisServer) -> None:
    base = throwaway_redis.url.rsplit("/", 1)[0]
    zero, three = connect_pipelined(f"{base}/0"), connect_pipelined(f"{base}/3")
    try:
        assert await three.set("resp:db", b"three", px=60_000)
        assert (await zero.get("resp:db"), await three.get("resp:db")) == (None, b"three")
    finally:
        await zero.aclose()
        await three.aclose()
