"""Shared fixtures: an app wired to in-process MongoDB (mongomock) and Redis (fakeredis) stand-ins."""
from __future__ import annotations

import socket
from pathlib import Path

import fakeredis
import pytest

from app import create_app, mongo
from app.config import load_config
from app.worker import Worker

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO / "tests" / "data"  # copies of ../shared/data, so a clone tests anywhere
SAMPLE_MOVIES = SHARED_DATA / "movies_data_assignment.head10.csv"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RecordingProducer:
    """Stands in for the ZeroMQ producer in in-process API tests; the real one has tests of its own."""

    def __init__(self):
        self.sent: list[tuple[str, str]] = []

    def send(self, task_id: str, kind: str) -> bool:
        self.sent.append((task_id, kind))
        return True


@pytest.fixture
def config(tmp_path):
    env = {
        "UPLOAD_FOLDER": str(tmp_path / "uploads"),
        "RESULT_FOLDER": str(tmp_path / "results"),
        "ZMQ_PORT": str(free_port()),
        "ZMQ_INTAKE_PORT": str(free_port()),
        "HEARTBEAT_SECONDS": "1",
    }
    return load_config(env)


@pytest.fixture
def db():
    return mongo.embedded_client()["test"]


@pytest.fixture
def redis_client():
    return fakeredis.FakeRedis()


@pytest.fixture
def producer():
    return RecordingProducer()


@pytest.fixture
def app(config, db, redis_client, producer):
    return create_app(config, db=db, redis_client=redis_client, producer=producer)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def worker(config, db):
    return Worker(config, db=db, name="test-worker")


@pytest.fixture
def upload_dir(config) -> Path:
    return Path(config.UPLOAD_FOLDER)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "soak: a bounded (< 60 s) soak test with real processes; part of the default run, as CI runs it")
    config.addinivalue_line(
        "markers", "browser: drives the web page in headless Chromium (tests/test_browser.py); -m 'not browser' skips")
