"""The response cache: keys that keep users apart, compact entries, an in-process and a Redis backend, and
the conversions that replay a cached answer as a stream or store a streamed one.

The pipeline builds one backend from settings and passes it in; nothing here reads settings. Its use::

    if is_cacheable(body):                                   # no-store: skip all of this
        key = cache_key(body, group=group, scope_id=user_id)  # scope_id None when CACHE_SCOPE=global
        hit = await cache.get(key)                            # no-cache: skip the lookup only
        # hit: answer it, or stream completion_to_chunks(hit, include_usage=...)
        # miss: call upstream; a stream's parsed chunks -> chunks_to_completion(chunks)
        if is_complete(answer):
            cache.set(key, answer)                            # never waits on I/O
"""

from llm_gateway.cache.base import ErrorCallback, ErrorKind, ResponseCache
from llm_gateway.cache.entry import decode_entry, encode_entry, is_complete
from llm_gateway.cache.keys import IGNORED_FIELDS, cache_key, is_cacheable
from llm_gateway.cache.memory import MemoryCache
from llm_gateway.cache.redis import RedisCache
from llm_gateway.cache.replay import chunks_to_completion, completion_to_chunks

__all__ = [
    "IGNORED_FIELDS",
    "ErrorCallback",
    "ErrorKind",
    "MemoryCache",
    "RedisCache",
    "ResponseCache",
    "cache_key",
    "chunks_to_completion",
    "completion_to_chunks",
    "decode_entry",
    "encode_entry",
    "is_cacheable",
    "is_complete",
]
