"""Schema migrations (the repo's and grouping's) on databases made by an older version: SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from grouping.store import GroupStore
from repo.schema import MIGRATIONS
from repo.store import open_store

from .test_repo_api import PG, _drop_database, _postgres_database


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    name = _postgres_database()
    assert name is not None
    yield f"{PG}/{name}"
    _drop_database(name)


def test_a_version_1_database_gets_the_later_columns(database_url: str) -> None:
    store = open_store(database_url)
    with store.engine.begin() as conn:  # make it look like version 1 did, before faces.job_item and jobs.runner
        conn.execute(text("DROP INDEX IF EXISTS ix_faces_job_item"))
        conn.execute(text("ALTER TABLE faces DROP COLUMN job_item"))
        conn.execute(text("ALTER TABLE jobs DROP COLUMN runner"))
        conn.execute(text("DROP TABLE negatives"))
        conn.execute(text("ALTER TABLE api_keys DROP COLUMN scope"))
        conn.execute(text("DROP TABLE idempotency_keys"))
        conn.execute(text("ALTER TABLE galleries DROP COLUMN version"))
        conn.execute(text("ALTER TABLE jobs DROP COLUMN lease_epoch"))
        conn.execute(text("ALTER TABLE jobs DROP COLUMN lease_expires_at"))
        conn.execute(text("DROP TABLE job_inputs"))
        conn.execute(text("DELETE FROM schema_migrations WHERE version > 1"))
    store.close()

    store = open_store(database_url)  # migrates
    with store.engine.connect() as conn:
        assert "job_item" in {c["name"] for c in inspect(conn).get_columns("faces")}
        assert "ix_faces_job_item" in {i["name"] for i in inspect(conn).get_indexes("faces")}
        assert "runner" in {c["name"] for c in inspect(conn).get_columns("jobs")}
        assert "subject_pk" in {c["name"] for c in inspect(conn).get_columns("negatives")}
        assert "scope" in {c["name"] for c in inspect(conn).get_columns("api_keys")}
        assert "version" in {c["name"] for c in inspect(conn).get_columns("galleries")}
        assert "fingerprint" in {c["name"] for c in inspect(conn).get_columns("idempotency_keys")}
        assert {"lease_epoch", "lease_expires_at"} <= {c["name"] for c in inspect(conn).get_columns("jobs")}
        assert "data" in {c["name"] for c in inspect(conn).get_columns("job_inputs")}
        assert conn.execute(text("SELECT max(version) FROM schema_migrations")).scalar_one() == MIGRATIONS[-1][0] == 7
    assert store.faces_of_job_item("job/0") == 0
    assert store.unheld_jobs("me", 0.0) == []
    assert store.gallery_negatives("no-such-gallery", "m") == []
    gallery = store.create_gallery(store.create_tenant("acme"), "people")
    assert gallery.version == 0 and store.rename_gallery(gallery, "staff").version == 1  # changes count from 0
    store.close()


def test_grouping_version_2_gives_old_group_faces_the_job_item_column(database_url: str) -> None:
    store = open_store(database_url)
    GroupStore(store)  # the component's tables, at the newest version
    with store.engine.begin() as conn:
        conn.execute(text("DROP INDEX IF EXISTS ix_group_faces_job_item"))
        conn.execute(text("ALTER TABLE group_faces DROP COLUMN job_item"))
        conn.execute(text("DELETE FROM component_migrations WHERE component = 'grouping' AND version > 1"))
    GroupStore(store)  # migrates
    with store.engine.connect() as conn:
        assert "job_item" in {c["name"] for c in inspect(conn).get_columns("group_faces")}
        assert "ix_group_faces_job_item" in {i["name"] for i in inspect(conn).get_indexes("group_faces")}
    store.close()
