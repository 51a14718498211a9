"""Remote stores fail fast and clearly, and never print the password of the URL they were given."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tuneforge.cli.main import main
from tuneforge.errors import TuneforgeError
from tuneforge.lifecycle.feedback import FeedbackStore
from tuneforge.lifecycle.registry import BACKOFF_VARIABLE, RETRIES_VARIABLE, TIMEOUT_VARIABLE, Registry
from tuneforge.redaction import redact_text, redact_url


@pytest.fixture(autouse=True)
def _mlflow_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from MLflow's own environment, and whatever the registry sets is undone afterwards."""
    for variable in (TIMEOUT_VARIABLE, RETRIES_VARIABLE, BACKOFF_VARIABLE):
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture()
def closed_port() -> int:
    """A port nothing listens on: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture()
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers, like a server stuck behind a firewall rule."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


@pytest.mark.parametrize(("text", "shown"), [
    ("postgresql://user:hunter2@db.example.com:5432/feedback", "postgresql://user:***@db.example.com:5432/feedback"),
    ("postgresql+psycopg2://u:p@ss@h/db", "postgresql+psycopg2://u:***@h/db"),
    ("https://mlflow.example.com:5000", "https://mlflow.example.com:5000"),
    ("sqlite:////home/me/.tuneforge/feedback.db", "sqlite:////home/me/.tuneforge/feedback.db"),
    ("https://host/api?token=abc123&page=2", "https://host/api?token=***&page=2"),
    ("could not reach 'mysql://root:hunter2@localhost/x': refused", "could not reach 'mysql://root:***@localhost/x': "
                                                                   "refused"),
])
def test_credentials_in_urls_are_masked(text: str, shown: str) -> None:
    assert redact_text(text) == shown
    assert redact_url(text) == shown


def test_a_feedback_store_error_does_not_print_its_password() -> None:
    with pytest.raises(TuneforgeError) as raised:
        FeedbackStore.open("postgresql+nosuchdriver://user:hunter2@127.0.0.1:1/feedback")
    assert "hunter2" not in str(raised.value)
    assert "user:***@127.0.0.1" in raised.value.message


def test_an_unreachable_registry_fails_fast_with_a_clear_error(closed_port: int, capsys) -> None:  # noqa: ANN001
    start = time.monotonic()
    code = main(["registry", "list", "--registry-uri", f"http://admin:hunter2@127.0.0.1:{closed_port}"])
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err
    assert code == 1
    assert elapsed < 30  # MLflow's own defaults retry for minutes
    assert "could not be reached" in err and "connection refused" in err
    assert "hunter2" not in err and "admin:***@" in err


def test_a_registry_that_never_answers_times_out(silent_port: int) -> None:
    start = time.monotonic()
    with pytest.raises(TuneforgeError, match="could not be reached") as raised:
        Registry(f"http://127.0.0.1:{silent_port}", timeout=1, retries=0).client  # noqa: B018 - connects
    assert time.monotonic() - start < 15
    assert "no answer in time" in raised.value.message and "1 tries of at most 1 s" in raised.value.message
    assert TIMEOUT_VARIABLE in raised.value.fix
