//! The schema's versions and how a database is brought to this build's.
//!
//! `migrations/postgres/NNNN_name.sql` holds version NNNN; each is applied
//! in its own transaction and recorded in `process_registry.migrations`.
//! Nodes connecting together serialize on a session advisory lock, so one
//! applies a migration and the others find it applied.

use tokio_postgres::{Client, Config, NoTls};

use crate::error::RegistryError;

/// Every migration, in order: (version, name, SQL).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../../../migrations/postgres/0001_initial.sql")),
    (2, "quarantined", include_str!("../../../migrations/postgres/0002_quarantined.sql")),
];

/// The schema version this build reads and writes.
pub(crate) const SCHEMA_VERSION: i64 = 2;

/// The advisory lock key migrations take (an arbitrary constant: "preg").
const MIGRATION_LOCK: i64 = 0x7072_6567;

/// Opens one connection and drives it on its own task; the client fails
/// its calls once the connection ends.
pub(crate) async fn connect(config: &Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "a PostgreSQL connection of the registry ended");
        }
    });
    Ok(client)
}

/// Brings the database to [`SCHEMA_VERSION`]: applies the migrations it
/// lacks, under the migration lock.
pub(crate) async fn migrate(client: &Client, label: &str) -> Result<(), RegistryError> {
    let failed = |error: tokio_postgres::Error| RegistryError::StoreOpen {
        path: label.to_owned(),
        message: format!("migrating the schema failed: {error}"),
    };
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await.map_err(failed)?;
    let migrated = apply(client, label).await;
    // Released even when a migration failed; a dropped connection releases it too.
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await.map_err(failed);
    migrated.and(unlocked.map(drop))
}

async fn apply(client: &Client, label: &str) -> Result<(), RegistryError> {
    let failed = |error: tokio_postgres::Error| RegistryError::StoreOpen {
        path: label.to_owned(),
        message: format!("migrating the schema failed: {error}"),
    };
    client
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS process_registry;
             CREATE TABLE IF NOT EXISTS process_registry.migrations (
                 version BIGINT PRIMARY KEY,
                 name TEXT NOT NULL,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             );",
        )
        .await
        .map_err(failed)?;
    let found: i64 = client
        .query_one("SELECT COALESCE(max(version), 0) FROM process_registry.migrations", &[])
        .await
        .map_err(failed)?
        .get(0);
    if found > SCHEMA_VERSION {
        return Err(RegistryError::StoreVersion { path: label.to_owned(), found, supported: SCHEMA_VERSION });
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|(version, _, _)| *version > found) {
        client.batch_execute("BEGIN").await.map_err(failed)?;
        let applied = async {
            client.batch_execute(sql).await?;
            client
                .execute("INSERT INTO process_registry.migrations (version, name) VALUES ($1, $2)", &[version, name])
                .await?;
            client.batch_execute("COMMIT").await
        }
        .await;
        if let Err(error) = applied {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(failed(error));
        }
        tracing::info!(version, name, "applied a PostgreSQL migration");
    }
    Ok(())
}
