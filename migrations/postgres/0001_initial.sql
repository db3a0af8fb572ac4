-- Version 1 of the PostgreSQL store: the SQLite store's tables, plus the
-- versions several nodes fence their commits with. Everything lives in the
-- schema `process_registry`, created by the runner before this file runs.

-- Each distinct list of declared event types once, by the SHA-256 of its
-- canonical JSON.
CREATE TABLE process_registry.declarations (
    hash TEXT PRIMARY KEY,
    event_types TEXT NOT NULL
);

-- One row per process: the record as JSON (without its event types), the
-- columns an append changes kept apart, the lease as JSON (its fencing
-- token survives release), and `version`, the number of commits the
-- process has had: every commit checks it and adds one, so a node that
-- planned on an old state commits nothing.
CREATE TABLE process_registry.processes (
    id TEXT PRIMARY KEY,
    declarations TEXT NOT NULL,
    record TEXT NOT NULL,
    status TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    last_sequence BIGINT NOT NULL DEFAULT 0,
    lease TEXT,
    version BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX processes_by_status ON process_registry.processes (status, id);

-- The logs, keyed by (process, sequence); no secondary index (typed counts
-- and waits are answered from the log in the process's actor).
CREATE TABLE process_registry.events (
    process_id TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    wake BOOLEAN NOT NULL,
    replay_key TEXT,
    occurred_at_ms BIGINT NOT NULL,
    payload TEXT NOT NULL,
    semantics TEXT,
    PRIMARY KEY (process_id, sequence)
);

CREATE TABLE process_registry.replay_keys (
    process_id TEXT NOT NULL,
    replay_key TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    payload_hash TEXT NOT NULL,
    PRIMARY KEY (process_id, replay_key)
);

CREATE TABLE process_registry.wake_acks (
    process_id TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    PRIMARY KEY (process_id, sequence)
);

CREATE TABLE process_registry.grants (
    scope_id TEXT NOT NULL,
    process_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    descriptor TEXT NOT NULL,
    PRIMARY KEY (scope_id, process_id)
);
CREATE INDEX grants_by_process ON process_registry.grants (process_id);

-- The grant index's version: every grant commit checks it and adds one.
CREATE TABLE process_registry.grants_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO process_registry.grants_version (id, version) VALUES (1, 0);
