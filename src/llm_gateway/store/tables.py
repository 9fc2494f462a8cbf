"""The database schema as SQLAlchemy declarative models; migrations/ creates and evolves it.

A test (``test_identity_store``) fails when these models and the migrations disagree.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    TypeDecorator,
    text,
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


class UsdAmount(TypeDecorator[Decimal]):
    """US dollars to the micro-dollar, exact on both backends (a float is refused, never stored).

    PostgreSQL: ``NUMERIC(20, 6)``, dollars as written. SQLite has no exact decimal type (its NUMERIC affinity
    turns ``'0.000123'`` into a float, and ``SUM`` adds floats), so there the column is a ``BIGINT`` of
    micro-dollars, which SQLite stores and sums exactly. Either way Python sees a ``Decimal`` with six places.
    """

    impl = Numeric(20, 6)
    cache_ok = True
    _MICRO = Decimal("0.000001")

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        return dialect.type_descriptor(BigInteger() if dialect.name == "sqlite" else Numeric(20, 6))

    def process_bind_param(self, value: Decimal | int | None, dialect: Dialect) -> Decimal | int | None:
        if value is None:
            return None
        if not isinstance(value, Decimal | int) or isinstance(value, bool):
            raise TypeError(f"a US dollar amount must be a Decimal, not {type(value).__name__}")
        amount = Decimal(value).quantize(self._MICRO, rounding=ROUND_HALF_EVEN)
        return int(amount.scaleb(6)) if dialect.name == "sqlite" else amount

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        amount = Decimal(int(value)).scaleb(-6) if dialect.name == "sqlite" else Decimal(value)
        return amount.quantize(self._MICRO)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Team(Base):
    """A team of users: budgets and a request rate its members share. Null means "no such limit"."""

    __tablename__ = "teams"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    monthly_budget_usd: Mapped[Decimal | None] = mapped_column(UsdAmount())
    monthly_token_budget: Mapped[int | None] = mapped_column(BigInteger)
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class User(Base):
    """A user known to the gateway; null overrides mean "use the configured default"."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    monthly_token_budget: Mapped[int | None] = mapped_column(BigInteger)
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    # Teams are never deleted, so a member's team always exists; the index serves a team's member count.
    team_id: Mapped[str | None] = mapped_column(String(255), ForeignKey("teams.id"), index=True)
    monthly_budget_usd: Mapped[Decimal | None] = mapped_column(UsdAmount())  # null: DEFAULT_MONTHLY_BUDGET_USD


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
    monthly_budget_usd: Mapped[Decimal | None] = mapped_column(UsdAmount())  # a cap inside the user's
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
        Index("ix_usage_ledger_team_id", "team_id", "month"),
        # The console's (revision 0007, ``console/queries.py``): newest-first paging, alone and by user or key; each
        # deployment's recent latencies, read from the index alone; the lists of providers and endpoints.
        Index("ix_usage_ledger_created_at", "created_at", "id"),
        Index("ix_usage_ledger_user_created", "user_id", "created_at", "id"),
        Index("ix_usage_ledger_key_created", "key_id", "created_at", "id"),
        Index("ix_usage_ledger_deployment", "provider", "upstream_model", "created_at", "status", "latency_ms"),
        Index("ix_usage_ledger_endpoint", "endpoint"),
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
    # What the request cost (prompt, cached-prompt and completion tokens at the deployment's price); 0 for a
    # cache hit, an unpriced model, and every row written before revision 0005.
    cost_usd: Mapped[Decimal] = mapped_column(UsdAmount(), server_default=text("0"))
    # The user's team when the request was admitted: a team's month is summed from its rows, so a user who
    # changes team takes none of the old team's spend along.
    team_id: Mapped[str | None] = mapped_column(String(255))
    # Upstream attempts the request made: 1 answered at once, more after a fallback, 0 for a cache hit or a
    # request that ended before reaching any upstream. Rows written before revision 0007 read 1.
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("1"))


class _Summed:
    """What both rollups sum: requests, and the tokens and US dollars charged."""

    requests: Mapped[int] = mapped_column(BigInteger)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)
    spend_usd: Mapped[Decimal] = mapped_column(UsdAmount())


class UsageHourly(_Summed, Base):
    """The ledger summed by hour (UTC), model group and deployment: the console's charts, top models and deployments.

    Kept by the ledger's writer in the transaction that inserts the rows it sums (``store/rollups.py``), so it
    always agrees with the ledger. Tokens and spend are what was charged (nothing for a cache hit). ``provider``
    and ``upstream_model`` are ``''`` where no deployment answered (a cache hit, every deployment failing).
    """

    __tablename__ = "usage_hourly"
    __table_args__ = (Index("ix_usage_hourly_model_group", "model_group"),)  # the console's list of model groups

    hour: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    model_group: Mapped[str] = mapped_column(String(255), primary_key=True)
    provider: Mapped[str] = mapped_column(String(64), primary_key=True)
    upstream_model: Mapped[str] = mapped_column(String(255), primary_key=True)
    cache_hits: Mapped[int] = mapped_column(BigInteger)
    errors: Mapped[int] = mapped_column(BigInteger)  # status >= 400
    fallbacks: Mapped[int] = mapped_column(BigInteger)  # answered after more than one attempt
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class UsageDaily(_Summed, Base):
    """The ledger summed by day (UTC), user and model group, in the month charged: the console's Usage and Users
    pages and top users. Kept as ``UsageHourly`` is. A request charged to a month and written after its last
    midnight counts on the month's last day, as its budget does."""

    __tablename__ = "usage_daily"

    day: Mapped[date] = mapped_column(Date(), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    model_group: Mapped[str] = mapped_column(String(255), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)


class ConsoleSession(Base):
    """A signed-in operator of the console (``/ui``). The cookie holds a random id; only its SHA-256 is kept here,
    so a copy of the database signs no one in. Kept in the database, so every replica knows every session."""

    __tablename__ = "console_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Sent back in every form of the session and compared on every POST (the console's CSRF token).
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)  # the purge walks this index


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
