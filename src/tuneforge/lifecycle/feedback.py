"""The feedback store: every prediction a server answered, and the corrections people sent back.

Storage is any SQLAlchemy database URL. The default is a SQLite file in WAL mode with `synchronous=FULL`, so a
row is on disk when its transaction commits; the server commits before it acknowledges, which is why nothing
acknowledged is lost even if the process is killed. For several hosts, point every server at one PostgreSQL URL.

Read API (used by refresh, drift monitoring and active learning; every reader goes through these methods):

- `FeedbackStore.open(url)`                      connect (and create the tables when missing)
- `store.predictions(model=, version=, since=, until=, limit=, newest_first=)` -> list[PredictionRecord]
- `store.feedback(model=, accepted=, since=, until=, limit=, newest_first=)`    -> list[FeedbackRecord]
- `store.count_predictions(model=, version=, since=)` / `store.count_feedback(model=, accepted=, since=)`
- `store.prediction(id)`                         -> PredictionRecord | None
- `store.corrections(model=, since=)`            -> list[Correction]: accepted feedback resolved to (text, label),
                                                    de-duplicated by text (the newest correction of a text wins)

Writers: `log_predictions(...)` (the server, one call per request), `add_feedback(...)`, `review(ids, accepted)`.
Times are timezone-aware UTC datetimes; probabilities come back as {label: probability} dicts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, OperationalError

from tuneforge.errors import TuneforgeError
from tuneforge.redaction import redact_text

FEEDBACK_FILE = "feedback.db"
# The largest id an Integer column holds: SQLite stores 64-bit integers, PostgreSQL and MySQL 32-bit ones.
MAX_ID = {"sqlite": 2**63 - 1}
MAX_ID_DEFAULT = 2**31 - 1

metadata = MetaData()

predictions_table = Table(
    "predictions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("model", String(200), nullable=False),
    Column("version", String(64), nullable=True),
    Column("text", Text, nullable=False),
    Column("pair", Text, nullable=True),
    Column("label", String(200), nullable=True),
    Column("score", Float, nullable=False),
    Column("confidence", Float, nullable=True),
    Column("probabilities", JSON, nullable=True),
    Index("ix_predictions_model_time", "model", "time"),
)

feedback_table = Table(
    "feedback", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("model", String(200), nullable=False),
    Column("prediction_id", Integer, ForeignKey("predictions.id"), nullable=True),
    Column("text", Text, nullable=True),
    Column("pair", Text, nullable=True),
    Column("label", String(200), nullable=False),
    Column("accepted", Boolean, nullable=False, default=True),
    Column("source", String(200), nullable=True),
    Index("ix_feedback_model_time", "model", "time"),
)


@dataclass(frozen=True)
class PredictionRecord:
    """One text scored by a served model version."""

    id: int
    time: datetime
    model: str
    version: str | None
    text: str
    pair: str | None
    label: str | None
    score: float
    confidence: float | None
    probabilities: dict[str, float] | None


@dataclass(frozen=True)
class FeedbackRecord:
    """A corrected label, for a logged prediction (`prediction_id`) or for a text sent directly."""

    id: int
    time: datetime
    model: str
    prediction_id: int | None
    text: str | None
    pair: str | None
    label: str
    accepted: bool
    source: str | None


@dataclass(frozen=True)
class Correction:
    """Accepted feedback resolved to the text it is about: what a re-training set needs."""

    text: str
    pair: str | None
    label: str
    time: datetime
    feedback_id: int


def default_store_url(home: str | Path) -> str:
    """The embedded default: a SQLite file in the tuneforge home folder."""
    return f"sqlite:///{Path(home).expanduser().resolve() / FEEDBACK_FILE}"


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    # SQLite keeps no timezone: values are written in UTC and read back naive.
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _sqlite_durability(engine: Engine) -> None:
    """WAL lets readers (drift reports) run beside the writing server; FULL syncs the WAL on every commit."""

    @event.listens_for(engine, "connect")
    def _pragmas(connection: Any, _: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")  # several server workers share one file
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


class FeedbackStore:
    """Predictions and feedback in one database; safe to share between threads and server processes."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.url = engine.url.render_as_string(hide_password=True)

    @classmethod
    def open(cls, url: str) -> FeedbackStore:
        """Connect to `url` (any SQLAlchemy URL) and create the tables if they do not exist."""
        try:
            engine = create_engine(url)
        except (ArgumentError, ImportError, ValueError) as error:
            raise TuneforgeError(f"cannot open the feedback store '{redact_text(url)}': {redact_text(str(error))}",
                                 fix="pass a SQLAlchemy URL such as sqlite:///feedback.db or "
                                     "postgresql://user@host/db (with its driver installed)") from error
        if engine.dialect.name == "sqlite":
            database = engine.url.database
            if database and database != ":memory:":
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            _sqlite_durability(engine)
        try:
            metadata.create_all(engine)
        except OperationalError as error:
            raise TuneforgeError(f"cannot open the feedback store '{engine.url.render_as_string(hide_password=True)}'"
                                 f": {redact_text(str(error.orig))}",
                                 fix="check the path or server and its permissions") from None
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- writers -------------------------------------------------------------------------------------------------

    def log_predictions(self, model: str, version: str | None, texts: Sequence[str], rows: Sequence[dict[str, Any]],
                        pairs: Sequence[str] | None = None, when: datetime | None = None) -> list[int]:
        """Store one row per text in one transaction; the ids come back in input order once it has committed."""
        moment = _utc(when) or datetime.now(timezone.utc)
        values = []
        for index, (text, row) in enumerate(zip(texts, rows, strict=True)):
            probabilities = row.get("probabilities")
            confidence = max(probabilities.values()) if probabilities else None
            values.append({"time": moment, "model": model, "version": version, "text": text,
                           "pair": pairs[index] if pairs is not None else None, "label": row.get("label"),
                           "score": float(row["score"]), "confidence": confidence, "probabilities": probabilities})
        if not values:
            return []
        with self.engine.begin() as connection:
            # One INSERT ... RETURNING per row keeps ids exact on every backend (a bulk insert does not return them
            # in order everywhere); all of them share one transaction, so one fsync.
            return [connection.execute(insert(predictions_table).values(**value).returning(predictions_table.c.id))
                    .scalar_one() for value in values]

    def add_feedback(self, model: str, label: str, prediction_id: int | None = None, text: str | None = None,
                     pair: str | None = None, accepted: bool = True, source: str | None = None,
                     when: datetime | None = None) -> FeedbackRecord:
        """Store a corrected label, about a logged prediction or a text; committed before it returns."""
        if (prediction_id is None) == (text is None):
            raise TuneforgeError("feedback names either a prediction id or a text, not both or neither",
                                 fix="pass prediction_id=... (from a /predict answer) or text=...")
        moment = _utc(when) or datetime.now(timezone.utc)
        with self.engine.begin() as connection:
            if prediction_id is not None:
                found = connection.execute(select(predictions_table.c.model).where(
                    predictions_table.c.id == prediction_id)).scalar_one_or_none()
                if found is None:
                    raise TuneforgeError(f"prediction {prediction_id} is not in the feedback store",
                                         fix="send the id from a /predict answer of this server, or the text itself")
            new_id = connection.execute(insert(feedback_table).values(
                time=moment, model=model, prediction_id=prediction_id, text=text, pair=pair, label=label,
                accepted=accepted, source=source).returning(feedback_table.c.id)).scalar_one()
        return FeedbackRecord(new_id, moment, model, prediction_id, text, pair, label, accepted, source)

    def review(self, ids: Iterable[int], accepted: bool) -> int:
        """Accept or reject feedback rows (only accepted feedback is used for re-training); returns rows changed."""
        ids = list(ids)
        if not ids:
            return 0
        with self.engine.begin() as connection:
            return connection.execute(update(feedback_table).where(feedback_table.c.id.in_(ids))
                                      .values(accepted=accepted)).rowcount

    # -- readers -------------------------------------------------------------------------------------------------

    def predictions(self, model: str | None = None, version: str | None = None, since: datetime | None = None,
                    until: datetime | None = None, limit: int | None = None,
                    newest_first: bool = False) -> list[PredictionRecord]:
        """Logged predictions, oldest first unless `newest_first`; every filter is optional."""
        table = predictions_table
        query = select(table)
        if model is not None:
            query = query.where(table.c.model == model)
        if version is not None:
            query = query.where(table.c.version == str(version))
        if since is not None:
            query = query.where(table.c.time >= _utc(since))
        if until is not None:
            query = query.where(table.c.time < _utc(until))
        query = query.order_by(table.c.id.desc() if newest_first else table.c.id)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as connection:
            return [_prediction(row) for row in connection.execute(query).mappings()]

    def prediction(self, prediction_id: int) -> PredictionRecord | None:
        """The logged prediction with this id; None when there is none, including an id no id column can hold
        (the database would refuse the query rather than find nothing)."""
        if not 1 <= prediction_id <= MAX_ID.get(self.engine.dialect.name, MAX_ID_DEFAULT):
            return None
        with self.engine.connect() as connection:
            row = connection.execute(select(predictions_table).where(
                predictions_table.c.id == prediction_id)).mappings().first()
        return _prediction(row) if row is not None else None

    def feedback(self, model: str | None = None, accepted: bool | None = None, since: datetime | None = None,
                 until: datetime | None = None, limit: int | None = None,
                 newest_first: bool = False) -> list[FeedbackRecord]:
        """Feedback rows as sent (a row about a prediction carries its id, not the text: see `corrections`)."""
        table = feedback_table
        query = select(table)
        if model is not None:
            query = query.where(table.c.model == model)
        if accepted is not None:
            query = query.where(table.c.accepted == accepted)
        if since is not None:
            query = query.where(table.c.time >= _utc(since))
        if until is not None:
            query = query.where(table.c.time < _utc(until))
        query = query.order_by(table.c.id.desc() if newest_first else table.c.id)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as connection:
            return [_feedback(row) for row in connection.execute(query).mappings()]

    def corrections(self, model: str | None = None, since: datetime | None = None,
                    limit: int | None = None) -> list[Correction]:
        """Accepted feedback as (text, label), one per distinct text and pair, the newest correction winning;
        oldest first. `limit` keeps the most recent ones."""
        f, p = feedback_table, predictions_table
        query = (select(f.c.id, f.c.time, f.c.label, func.coalesce(f.c.text, p.c.text).label("resolved_text"),
                        func.coalesce(f.c.pair, p.c.pair).label("resolved_pair"))
                 .select_from(f.outerjoin(p, f.c.prediction_id == p.c.id))
                 .where(f.c.accepted.is_(True)).order_by(f.c.id))
        if model is not None:
            query = query.where(f.c.model == model)
        if since is not None:
            query = query.where(f.c.time >= _utc(since))
        latest: dict[tuple[str, str | None], Correction] = {}
        with self.engine.connect() as connection:
            for row in connection.execute(query).mappings():
                key = (row["resolved_text"], row["resolved_pair"])
                latest.pop(key, None)  # re-inserted, so the dict stays in order of each text's newest correction
                latest[key] = Correction(row["resolved_text"], row["resolved_pair"], row["label"], _utc(row["time"]),
                                         row["id"])
        found = list(latest.values())
        return found[-limit:] if limit is not None else found

    def count_predictions(self, model: str | None = None, version: str | None = None,
                          since: datetime | None = None) -> int:
        table = predictions_table
        query = select(func.count()).select_from(table)
        if model is not None:
            query = query.where(table.c.model == model)
        if version is not None:
            query = query.where(table.c.version == str(version))
        if since is not None:
            query = query.where(table.c.time >= _utc(since))
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def count_feedback(self, model: str | None = None, accepted: bool | None = None,
                       since: datetime | None = None) -> int:
        table = feedback_table
        query = select(func.count()).select_from(table)
        if model is not None:
            query = query.where(table.c.model == model)
        if accepted is not None:
            query = query.where(table.c.accepted == accepted)
        if since is not None:
            query = query.where(table.c.time >= _utc(since))
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())


def _probabilities(value: Any) -> dict[str, float] | None:
    if value is None:
        return None
    return json.loads(value) if isinstance(value, str) else dict(value)


def _prediction(row: Any) -> PredictionRecord:
    return PredictionRecord(row["id"], _utc(row["time"]), row["model"], row["version"], row["text"], row["pair"],
                            row["label"], row["score"], row["confidence"], _probabilities(row["probabilities"]))


def _feedback(row: Any) -> FeedbackRecord:
    return FeedbackRecord(row["id"], _utc(row["time"]), row["model"], row["prediction_id"], row["text"],
                          row["pair"], row["label"], bool(row["accepted"]), row["source"])
