//! A fresh PostgreSQL database per test, on the server whose connection
//! string is in `PROCESS_REGISTRY_TEST_POSTGRES` (`.ci/run` starts a
//! throwaway cluster and sets it; `.ci/postgres start DIR` does the same
//! by hand).
//!
//! Without the variable a test prints why and skips, except under
//! `CI=true`, where a missing database fails the run: CI must never pass
//! by skipping.

/// The variable naming the test server.
pub const SERVER_VAR: &str = "PROCESS_REGISTRY_TEST_POSTGRES";

/// The test server's connection string, or `None` (after printing how to
/// start one) when it is not set outside CI.
///
/// # Panics
///
/// Under `CI=true` when the variable is not set.
pub fn server() -> Option<String> {
    match std::env::var(SERVER_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|value| value == "true") => {
            panic!("CI=true but {SERVER_VAR} is not set: .ci/run starts the test database and sets it")
        }
        _ => {
            eprintln!(
                "skipped: no PostgreSQL test server. Start one with `eval \"$(.ci/postgres start /tmp/pg)\"` \
                 (it sets {SERVER_VAR}), or set {SERVER_VAR} to a connection string"
            );
            None
        }
    }
}

/// `server` with its database replaced by `database` (a libpq key=value
/// string gets a later `dbname`, which wins; a URL gets a new path).
pub fn with_database(server: &str, database: &str) -> String {
    let trimmed = server.trim();
    if let Some(rest) = trimmed.strip_prefix("postgres://").or_else(|| trimmed.strip_prefix("postgresql://")) {
        let (before_query, query) = rest.split_once('?').map_or((rest, None), |(path, query)| (path, Some(query)));
        let authority = before_query.split_once('/').map_or(before_query, |(authority, _)| authority);
        let query = query.map(|query| format!("?{query}")).unwrap_or_default();
        format!("postgres://{authority}/{database}{query}")
    } else {
        format!("{trimmed} dbname={database}")
    }
}

/// Creates an empty database with a fresh name on `server` and returns
/// its connection string.
///
/// # Panics
///
/// When the server cannot be reached or refuses (a test cannot go on).
pub async fn fresh_database(server: &str) -> String {
    let (client, connection) = tokio_postgres::connect(server, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|error| panic!("cannot reach the PostgreSQL test server ({server}): {error}"));
    let driver = tokio::spawn(connection);
    let name = format!("registry_test_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap_or_else(|error| panic!("cannot create a test database: {error}"));
    drop(client);
    let _ = driver.await;
    with_database(server, &name)
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn a_database_replaces_the_servers() {
        assert_eq!(
            with_database("host=/tmp port=5 user=postgres dbname=postgres", "t"),
            "host=/tmp port=5 user=postgres dbname=postgres dbname=t"
        );
        assert_eq!(
            with_database("postgres://u:p@h:5/postgres?sslmode=disable", "t"),
            "postgres://u:p@h:5/t?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "t"), "postgres://u@h/t");
    }
}
