"""Persistent state: the SQL database (keys, users, later the usage ledger) and the Redis client."""
