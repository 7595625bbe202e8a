"""Shared test setup: the anyio backend, and a real PostgreSQL server when a test needs one."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator

import psycopg
import pytest

from tests.support.postgres import PostgresServer, ServerUnavailable


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (marked `anyio`) run on asyncio."""
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """The URL of a real PostgreSQL server: `RAILYARD_TEST_POSTGRES`, or one started for the session.

    If none can be had the test fails and says why; it is never skipped.
    """
    given = os.environ.get("RAILYARD_TEST_POSTGRES")
    if given:
        yield given
        return
    try:
        server = PostgresServer.start()
    except ServerUnavailable as err:
        pytest.fail(f"This test needs a PostgreSQL server and none could be started: {err}", pytrace=False)
    try:
        yield server.url
    finally:
        server.stop()


_databases = itertools.count()


@pytest.fixture
def new_postgres_database(postgres_server_url: str) -> Callable[[], str]:
    """Makes a new, empty database on the test server and returns its URL."""

    def make() -> str:
        name = f"railyard_t{os.getpid()}_{next(_databases)}"
        with psycopg.connect(postgres_server_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
            connection.execute(f'CREATE DATABASE "{name}"')
        return postgres_server_url.rsplit("/", 1)[0] + f"/{name}"

    return make
