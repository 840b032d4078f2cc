"""The Redis fixtures: a real server, and a database of its own for each test."""

from __future__ import annotations

from urllib.parse import urlparse

from diracx.testing.redis import RedisServer, commands


def test_redis_url_answers(redis_url: str, redis_server: RedisServer) -> None:
    parsed = urlparse(redis_url)
    assert (parsed.scheme, parsed.hostname, parsed.port, parsed.path) == (
        "redis",
        "127.0.0.1",
        redis_server.port,
        "/0",
    )
    assert commands(redis_server.port, ("PING",)) == [b"+PONG"]
    # nothing is written to disk
    assert commands(redis_server.port, ("CONFIG", "GET", "appendonly"))[0].startswith(b"*2")


def test_fresh_redis_url_is_empty_and_its_own(
    fresh_redis_url: str, redis_server: RedisServer
) -> None:
    db = urlparse(fresh_redis_url).path.lstrip("/")
    assert db != "0"
    port = redis_server.port
    assert commands(port, ("SELECT", db), ("DBSIZE",)) == [b"+OK", b":0"]
    assert commands(port, ("SELECT", db), ("SET", "left-over", "1")) == [b"+OK", b"+OK"]
    redis_server.flush(int(db))
    assert commands(port, ("SELECT", db), ("DBSIZE",)) == [b"+OK", b":0"]
