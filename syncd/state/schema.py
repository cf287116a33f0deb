"""The state database's schema, and the migrations that bring an older file up to it."""

from __future__ import annotations

import sqlite3

__all__ = ["SCHEMA", "SCHEMA_VERSION", "migrate"]

SCHEMA_VERSION = 6

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS folders (
    id INTEGER PRIMARY KEY,
    local TEXT NOT NULL,
    remote TEXT NOT NULL,
    listed_at TEXT,
    remote_count INTEGER,
    unknown_kept INTEGER NOT NULL DEFAULT 0,
    last_sync REAL,
    reconciled_at REAL,
    refused TEXT,
    refused_deletes INTEGER NOT NULL DEFAULT 0,
    refused_at REAL,
    UNIQUE (local, remote)
);
CREATE TABLE IF NOT EXISTS files (
    folder_id INTEGER NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    sha1 TEXT NOT NULL,
    uuid TEXT NOT NULL,
    remote_sha1 TEXT,
    synced_at REAL NOT NULL,
    foreign_asset INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (folder_id, path)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS journal (
    folder_id INTEGER NOT NULL,
    path TEXT NOT NULL,
    PRIMARY KEY (folder_id, path)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS orphans (
    folder_id INTEGER NOT NULL,
    uuid TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (folder_id, uuid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS unsure_uploads (
    folder_id INTEGER NOT NULL,
    path TEXT NOT NULL,
    sha1 TEXT NOT NULL,
    dam_folder TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    window_start TEXT NOT NULL,
    window_end TEXT NOT NULL,
    PRIMARY KEY (folder_id, path, sha1)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS parked (
    folder_id INTEGER NOT NULL,
    path TEXT NOT NULL,
    op TEXT NOT NULL,
    error TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (folder_id, path)
) WITHOUT ROWID;
"""


def migrate(conn: sqlite3.Connection) -> None:
    """Bring a database written by an older syncd up to the current schema."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(folders)")}
    if "unknown_kept" not in columns:  # schema 1
        conn.execute("ALTER TABLE folders ADD COLUMN unknown_kept INTEGER NOT NULL DEFAULT 0")
    if "reconciled_at" not in columns:  # schema 3: its last run was a reconcile too
        conn.execute("ALTER TABLE folders ADD COLUMN reconciled_at REAL")
        conn.execute("UPDATE folders SET reconciled_at = last_sync")
    if "refused" not in columns:  # schema 6: why the last run held deletes back
        conn.execute("ALTER TABLE folders ADD COLUMN refused TEXT")
        conn.execute("ALTER TABLE folders ADD COLUMN refused_deletes INTEGER NOT NULL DEFAULT 0")
        conn.execute("ALTER TABLE folders ADD COLUMN refused_at REAL")
    columns = {row[1] for row in conn.execute("PRAGMA table_info(files)")}
    if "foreign_asset" not in columns:  # schema 1
        conn.execute("ALTER TABLE files ADD COLUMN foreign_asset INTEGER NOT NULL DEFAULT 0")
