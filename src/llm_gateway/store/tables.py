"""The database schema as SQLAlchemy declarative models; migrations/ creates and evolves it.

A test (``test_identity_store``) fails when these models and the migrations disagree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deterministic constraint names, so migrations can drop or alter them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes everywhere: SQLite stores naive text, so naive values are read back as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    """A user known to the gateway; null overrides mean "use the configured default"."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    monthly_token_budget: Mapped[int | None] = mapped_column(BigInteger)
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class ApiKey(Base):
    """An API key. Only the SHA-256 of the secret is stored; ``prefix`` is its non-secret visible part."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255), ForeignKey("users.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(255))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(32))
    models: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True))
    monthly_token_budget: Mapped[int | None] = mapped_column(BigInteger)
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class UsageRecord(Base):
    """One served (or refused upstream) request: the ledger that monthly usage is summed from."""

    __tablename__ = "usage_ledger"
    __table_args__ = (
        Index("ix_usage_ledger_user_id", "user_id", "month"),
        Index("ix_usage_ledger_key_id", "key_id", "month"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[str] = mapped_column(String(255))
    key_id: Mapped[str | None] = mapped_column(String(32))
    month: Mapped[str] = mapped_column(String(7))
    model_group: Mapped[str] = mapped_column(String(255))
    provider: Mapped[str | None] = mapped_column(String(64))
    upstream_model: Mapped[str | None] = mapped_column(String(255))
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)
    cached: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The inbound API the request came through (``chat``, ``messages``, ``embeddings``, ``responses``).
    # No index: reports read a user's or a key's month, which the indexes above already narrow.
    endpoint: Mapped[str] = mapped_column(String(32), server_default="chat")


class StoredResponseRecord(Base):
    """A response of ``POST /v1/responses`` kept for ``previous_response_id`` and ``GET``, until ``expires_at``."""

    __tablename__ = "responses"

    # The response id ("resp_..."): the upstream's own for a native answer, so a follow-up can pass it on.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # No index on owner: every lookup is by id, and the owner is checked on that one row.
    owner: Mapped[str] = mapped_column(String(255))
    provider: Mapped[str] = mapped_column(String(64))
    native: Mapped[bool] = mapped_column(Boolean)  # answered by the provider's own Responses API
    model_group: Mapped[str] = mapped_column(String(255))
    # The response this one continued (``previous_response_id``): a conversation is the chain of these
    # links, each row holding its own turn only, so storage grows linearly with the turns. No foreign key
    # (a parent may be deleted or purged first) and no index (the chain is walked upwards, by primary key).
    previous_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # JSON, not PostgreSQL's JSONB: the text is kept as written (compact, keys in order, any escape).
    input_items: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # this request's input, not the history
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)  # the purge walks this index
