-- Version 2 of the PostgreSQL store: the processes a registry quarantined
-- (its actor kept failing), with why and since when, so that a node that
-- opens the store later routes them as quarantined too. A node learns of
-- another node's quarantine when it opens; until then each node keeps its
-- own (the supervisor that quarantines is per node).
CREATE TABLE process_registry.quarantined (
    process_id TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    since_ms BIGINT NOT NULL
);
