"""Where a study lives: SQLite in the study directory by default, any SQLAlchemy URL for shared studies.

Optuna's RDBStorage does the work. What it leaves to the caller: a lock timeout so several worker processes
can write one SQLite file, WAL journaling so readers do not block the writer, and heartbeats so a trial whose
process died is noticed, marked failed and queued again instead of staying "running" forever.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneforge.errors import TuneforgeError

STUDY_DB = "study.db"
SQLITE_TIMEOUT_S = 120  # a writer waits this long for another worker's transaction instead of failing
HEARTBEAT_INTERVAL_S = 15
GRACE_PERIOD_S = 60  # a running trial without a heartbeat for this long belongs to a dead process
MAX_RETRIES = 2  # a trial whose process died is run again at most this often


def storage_url(storage: str | None, directory: Path) -> str:
    return storage or f"sqlite:///{(directory / STUDY_DB).resolve()}"


def open_storage(url: str, heartbeat_interval: int = HEARTBEAT_INTERVAL_S,
                 grace_period: int = GRACE_PERIOD_S) -> Any:
    import warnings

    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT_S}
    else:
        engine_kwargs["pool_pre_ping"] = True  # a server that dropped an idle connection is reconnected
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            storage = RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES),
            )
    except (ImportError, ModuleNotFoundError) as error:
        raise TuneforgeError(f"the study storage '{_redact(url)}' needs a database driver that is not installed "
                             f"({error})", fix="install the driver (e.g. pip install psycopg2-binary for "
                             "PostgreSQL, pymysql for MySQL), or leave search.storage empty for SQLite") from None
    except Exception as error:  # noqa: BLE001 - SQLAlchemy and driver errors vary; all mean "cannot open"
        raise TuneforgeError(f"cannot open the study storage '{_redact(url)}': {type(error).__name__}: "
                             f"{str(error).splitlines()[0] if str(error) else ''}",
                             fix="check search.storage (a SQLAlchemy URL such as postgresql://user@host/db) "
                                 "and that the database is reachable") from None
    if url.startswith("sqlite"):
        _use_wal(storage)
    return storage


def _use_wal(storage: Any) -> None:
    # journal_mode is stored in the database file, so setting it once covers every later connection.
    import sqlalchemy

    with storage.engine.connect() as connection:
        connection.execute(sqlalchemy.text("PRAGMA journal_mode=WAL"))


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL has no password to hide worth a crash
        return url.split("@")[-1]

