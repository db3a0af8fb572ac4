//! Opening a bad file is a typed error, never a panic: garbage, truncated
//! databases, another schema version (an early version 1 layout too),
//! paths that cannot be written, a file another registry holds (under
//! another name too), a directory. Each case goes through
//! `ActorProcessRegistry::open`, `SqliteStore::open` and the read-only
//! `SqliteInspector` where it fits.

use std::path::{Path, PathBuf};

use process_registry::store::sqlite::{SqliteInspector, SQLITE_SCHEMA_VERSION};
use process_registry::{
    ActorProcessRegistry, ProcessAwaitOutput, ProcessEventAppendRequest, ProcessEventType, ProcessInput,
    ProcessListFilter, ProcessRegistration, ProcessRegistry, ProcessStatusFilter, RegistryConfig, RegistryError,
    SqliteOptions, SqliteStore,
};
use serde_json::json;

fn registration(id: &str) -> ProcessRegistration {
    ProcessRegistration::new(id, ProcessInput::definition("build", Default::default()))
        .with_extra_event_types([ProcessEventType::new("progress", json!({"type": "object"}))])
}

/// Writes a store of `processes` processes with a few events each (enough
/// pages that half the file is not the whole header), and closes it.
async fn write_store(path: &Path, processes: usize) {
    let registry = ActorProcessRegistry::open(path, RegistryConfig::default()).await.expect("open a new store");
    for index in 0..processes {
        let id = format!("p-{index:03}");
        registry.register_process(registration(&id)).await.expect("register");
        for percent in [10, 50, 90] {
            let payload = json!({"percent": percent, "note": "x".repeat(200)});
            registry.append_event(&id, ProcessEventAppendRequest::new("progress", payload)).await.expect("append");
        }
    }
    registry.complete_process("p-000", ProcessAwaitOutput::success(json!("done"))).await.expect("complete");
    registry.shutdown().await;
}

/// `ActorProcessRegistry::open`'s error (the registry is shut down if it
/// unexpectedly opened).
async fn registry_open_error(path: &Path) -> RegistryError {
    match ActorProcessRegistry::open(path, RegistryConfig::default()).await {
        Ok(registry) => {
            registry.shutdown().await;
            panic!("{} opened", path.display());
        }
        Err(error) => error,
    }
}

fn store_open_error(path: &Path) -> RegistryError {
    match SqliteStore::open(path, SqliteOptions::default()) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(error) => error,
    }
}

fn inspector_open_error(path: &Path) -> RegistryError {
    match SqliteInspector::open_read_only(path) {
        Ok(_) => panic!("{} opened read-only", path.display()),
        Err(error) => error,
    }
}

fn assert_store_open(error: &RegistryError, path: &Path) {
    match error {
        RegistryError::StoreOpen { path: shown, message } => {
            assert_eq!(shown, &path.display().to_string());
            assert!(!message.is_empty());
        }
        other => panic!("expected StoreOpen for {}, got {other:?}", path.display()),
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut lock = path.as_os_str().to_owned();
    lock.push("-lock");
    PathBuf::from(lock)
}

/// Bytes that are not a database: no SQLite header.
fn garbage(length: usize) -> Vec<u8> {
    (0..length).map(|index| (index.wrapping_mul(31).wrapping_add(7) % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_are_store_open_and_stay_untouched() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("garbage.db");
    let bytes = garbage(8192);
    std::fs::write(&path, &bytes).expect("write garbage");

    assert_store_open(&registry_open_error(&path).await, &path);
    assert_store_open(&store_open_error(&path), &path);
    assert_store_open(&inspector_open_error(&path), &path);
    assert_eq!(std::fs::read(&path).expect("read back"), bytes, "the file was written to");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_header_followed_by_garbage_is_store_open() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("header.db");
    let mut bytes = b"SQLite format 3\0".to_vec();
    bytes.extend(garbage(4096 - bytes.len()));
    std::fs::write(&path, &bytes).expect("write");

    assert_store_open(&registry_open_error(&path).await, &path);
    assert_store_open(&store_open_error(&path), &path);
    assert_store_open(&inspector_open_error(&path), &path);
    assert_eq!(std::fs::read(&path).expect("read back"), bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_database_is_store_open() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let original = directory.path().join("original.db");
    write_store(&original, 40).await;
    let bytes = std::fs::read(&original).expect("read the store");
    assert!(bytes.len() > 8 * 4096, "the store is only {} bytes", bytes.len());

    for (name, length) in [("half.db", bytes.len() / 2), ("hundred.db", 100)] {
        let path = directory.path().join(name);
        let truncated = bytes.get(..length).expect("a prefix");
        std::fs::write(&path, truncated).expect("write the truncated copy");
        assert_store_open(&registry_open_error(&path).await, &path);
        assert_store_open(&store_open_error(&path), &path);
        assert_store_open(&inspector_open_error(&path), &path);
        assert_eq!(std::fs::read(&path).expect("read back"), truncated, "{name} was written to");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_schema_version_is_store_version_and_the_file_is_untouched() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("future.db");
    write_store(&path, 3).await;
    {
        let connection = rusqlite::Connection::open(&path).expect("open with rusqlite");
        connection.pragma_update(None, "user_version", 99).expect("set user_version");
    }
    let before = std::fs::read(&path).expect("read");

    let expected =
        RegistryError::StoreVersion { path: path.display().to_string(), found: 99, supported: SQLITE_SCHEMA_VERSION };
    assert_eq!(registry_open_error(&path).await, expected);
    assert_eq!(store_open_error(&path), expected);
    assert_eq!(inspector_open_error(&path), expected);
    assert_eq!(std::fs::read(&path).expect("read back"), before, "the file was written to");
}

/// Another version whose registry crashed with its last commits still in
/// the WAL: refused without checkpointing that WAL into the file (a
/// read-write connection would have, on closing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_version_with_a_wal_left_behind_is_refused_without_checkpointing_it() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("future-wal.db");
    write_store(&path, 2).await;
    {
        let connection = rusqlite::Connection::open(&path).expect("open with rusqlite");
        connection.pragma_update(None, "wal_autocheckpoint", 0).expect("no automatic checkpoints");
        connection
            .set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
            .expect("no checkpoint on close");
        connection.pragma_update(None, "user_version", 99).expect("a newer version, in the WAL only");
    }
    let wal = directory.path().join("future-wal.db-wal");
    assert!(wal.metadata().is_ok_and(|metadata| metadata.len() > 0), "the WAL is left behind");
    let before = std::fs::read(&path).expect("read");
    let expected =
        RegistryError::StoreVersion { path: path.display().to_string(), found: 99, supported: SQLITE_SCHEMA_VERSION };
    assert_eq!(registry_open_error(&path).await, expected);
    assert_eq!(store_open_error(&path), expected);
    assert_eq!(std::fs::read(&path).expect("read back"), before, "the WAL was checkpointed into the file");
    assert!(wal.metadata().is_ok_and(|metadata| metadata.len() > 0), "the WAL is still there");
}

/// A file of the version before this one (no `quarantined` table yet):
/// the inspector reads it as it is, and a registry upgrades it in place,
/// keeping everything it held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_of_the_previous_version_is_read_as_it_is_and_upgraded_by_a_registry() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("previous.db");
    write_store(&path, 3).await;
    {
        let connection = rusqlite::Connection::open(&path).expect("open with rusqlite");
        connection.execute_batch("DROP TABLE quarantined; PRAGMA user_version = 1;").expect("make it version 1");
    }
    let before = std::fs::read(&path).expect("read");
    let inspector = SqliteInspector::open_read_only(&path).expect("an inspector reads a version 1 file");
    assert_eq!(inspector.schema_version(), 1);
    assert_eq!(inspector.list(ProcessStatusFilter::Any, None).expect("list").len(), 3);
    drop(inspector);
    assert_eq!(std::fs::read(&path).expect("read back"), before, "the inspector wrote to the file");

    let registry = ActorProcessRegistry::open(&path, RegistryConfig::default()).await.expect("a registry opens it");
    let every = ProcessListFilter { status: ProcessStatusFilter::Any, ..ProcessListFilter::default() };
    assert_eq!(registry.list_processes(&every).await.expect("list").len(), 3, "every process is kept");
    assert_eq!(registry.events_after("p-001", 0).await.expect("its log").len(), 3, "and every event");
    registry.shutdown().await;
    assert_eq!(SqliteInspector::open_read_only(&path).expect("inspect").schema_version(), SQLITE_SCHEMA_VERSION);
    let connection = rusqlite::Connection::open(&path).expect("open with rusqlite");
    let tables: i64 = connection
        .query_row("SELECT count(*) FROM sqlite_master WHERE name = 'quarantined'", [], |row| row.get(0))
        .expect("look for the table");
    assert_eq!(tables, 1, "the upgrade added the quarantine table");
}

/// A version 1 file from an early build, which kept each event as one
/// JSON column: the upgrade would relabel a log this build cannot read,
/// so it is refused as a version this build does not support, untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_file_with_the_early_event_layout_is_store_version_and_untouched() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("early.db");
    write_store(&path, 2).await;
    {
        let connection = rusqlite::Connection::open(&path).expect("open with rusqlite");
        connection
            .execute_batch(
                "DROP TABLE quarantined; DROP TABLE events;
                 CREATE TABLE events (process_id TEXT NOT NULL, sequence INTEGER NOT NULL, event TEXT NOT NULL,
                                      PRIMARY KEY (process_id, sequence)) WITHOUT ROWID;
                 PRAGMA user_version = 1;",
            )
            .expect("make it an early version 1 file");
    }
    let before = std::fs::read(&path).expect("read");
    let expected =
        RegistryError::StoreVersion { path: path.display().to_string(), found: 1, supported: SQLITE_SCHEMA_VERSION };
    assert_eq!(registry_open_error(&path).await, expected);
    assert_eq!(store_open_error(&path), expected);
    assert_eq!(std::fs::read(&path).expect("read back"), before, "the file was written to");
}

/// A process whose log in the file ends short of what its row says (rows
/// deleted by hand): activating it is a typed error, not a process that
/// loads and then refuses every append as out of order; the others work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_ends_short_of_its_row_is_a_typed_error_on_activation() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("short.db");
    write_store(&path, 2).await;
    {
        let connection = rusqlite::Connection::open(&path).expect("open with rusqlite");
        connection
            .execute("DELETE FROM events WHERE process_id = 'p-001' AND sequence = 3", [])
            .expect("drop the last event of p-001");
    }
    let registry = ActorProcessRegistry::open(&path, RegistryConfig::default()).await.expect("open");
    match registry.events_after("p-001", 0).await {
        Err(RegistryError::Storage { message, .. }) => assert!(message.contains("ends at 2"), "{message}"),
        other => panic!("the short log: {other:?}"),
    }
    assert_eq!(registry.events_after("p-000", 0).await.expect("the other process").len(), 4);
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_database_is_store_version_zero() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("foreign.db");
    {
        let connection = rusqlite::Connection::open(&path).expect("open with rusqlite");
        connection.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('hi');").expect("create");
    }
    let before = std::fs::read(&path).expect("read");
    let expected =
        RegistryError::StoreVersion { path: path.display().to_string(), found: 0, supported: SQLITE_SCHEMA_VERSION };
    assert_eq!(registry_open_error(&path).await, expected);
    assert_eq!(inspector_open_error(&path), expected);
    assert_eq!(std::fs::read(&path).expect("read back"), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_file_becomes_a_new_store_but_is_no_store_to_inspect() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("empty.db");
    std::fs::write(&path, b"").expect("create an empty file");
    assert_store_open(&inspector_open_error(&path), &path);
    assert_eq!(std::fs::read(&path).expect("read back"), b"", "inspecting wrote to the file");

    // SQLite reads an empty file as an empty database: a registry sets it up.
    let registry = ActorProcessRegistry::open(&path, RegistryConfig::default()).await.expect("open");
    registry.register_process(registration("p-1")).await.expect("register");
    registry.shutdown().await;
    let inspector = SqliteInspector::open_read_only(&path).expect("now a store");
    assert_eq!(inspector.counts().expect("counts").running, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_file_is_store_open_for_the_inspector_and_nothing_is_created() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("missing.db");
    assert_store_open(&inspector_open_error(&path), &path);
    let left: Vec<_> = std::fs::read_dir(directory.path()).expect("list").collect();
    assert!(left.is_empty(), "the inspector created {left:?}");
}

/// True when this process may create files in `directory` whatever its
/// mode says (root, or a capability that bypasses permission checks).
fn bypasses_permissions(directory: &Path) -> bool {
    let probe = directory.join("probe");
    let created = std::fs::write(&probe, b"").is_ok();
    let _ = std::fs::remove_file(&probe);
    created
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_without_write_permission() {
    use std::os::unix::fs::PermissionsExt;

    let directory = tempfile::tempdir().expect("a temporary directory");
    let locked = directory.path().join("read-only");
    std::fs::create_dir(&locked).expect("create");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).expect("chmod 0555");
    let path = locked.join("registry.db");

    if bypasses_permissions(&locked) {
        // Root writes anyway: the store opens and works, as it would in a
        // writable directory.
        let registry = ActorProcessRegistry::open(&path, RegistryConfig::default()).await.expect("root opens");
        registry.register_process(registration("p-1")).await.expect("register");
        registry.shutdown().await;
        assert_eq!(SqliteInspector::open_read_only(&path).expect("inspect").counts().expect("counts").running, 1);
    } else {
        assert_store_open(&registry_open_error(&path).await, &path);
        assert_store_open(&store_open_error(&path), &path);
        assert!(!path.exists());
    }
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).expect("chmod back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_below_a_regular_file_cannot_be_created_even_by_root() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let file = directory.path().join("plain-file");
    std::fs::write(&file, b"not a directory").expect("write");
    let path = file.join("registry.db");

    assert_store_open(&registry_open_error(&path).await, &path);
    assert_store_open(&store_open_error(&path), &path);
    assert_store_open(&inspector_open_error(&path), &path);
    assert_eq!(std::fs::read(&file).expect("read back"), b"not a directory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_is_store_open_and_no_lock_file_is_left() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("a-directory");
    std::fs::create_dir(&path).expect("create");

    assert_store_open(&registry_open_error(&path).await, &path);
    assert_store_open(&store_open_error(&path), &path);
    assert_store_open(&inspector_open_error(&path), &path);
    assert!(!lock_path(&path).exists(), "a lock file was left beside the directory");
    assert_eq!(std::fs::read_dir(&path).expect("list").count(), 0, "something was created inside the directory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_another_registry_holds_is_store_locked_and_the_holder_keeps_working() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("held.db");
    let holder = ActorProcessRegistry::open(&path, RegistryConfig::default()).await.expect("open");
    holder.register_process(registration("p-1")).await.expect("register");

    let locked = RegistryError::StoreLocked { path: path.display().to_string() };
    assert_eq!(registry_open_error(&path).await, locked);
    assert_eq!(store_open_error(&path), locked);

    // The refused opens changed nothing for the holder.
    let appended = holder
        .append_event("p-1", ProcessEventAppendRequest::new("progress", json!({"percent": 1})))
        .await
        .expect("append after the refused opens");
    assert_eq!(appended.event.sequence, 1);
    holder.complete_process("p-1", ProcessAwaitOutput::success(json!(1))).await.expect("complete");
    // A reader may look while the holder holds it.
    let inspector = SqliteInspector::open_read_only(&path).expect("read-only while held");
    assert_eq!(inspector.counts().expect("counts").completed, 1);
    // Another name of the same file (a symlink) finds the same lock.
    let alias = directory.path().join("alias.db");
    std::os::unix::fs::symlink(&path, &alias).expect("a symlink to the held store");
    assert_eq!(store_open_error(&alias), RegistryError::StoreLocked { path: alias.display().to_string() });
    holder.shutdown().await;

    // Released by shutdown: the next registry opens and sees it all.
    let next = ActorProcessRegistry::open(&path, RegistryConfig::default()).await.expect("reopen");
    assert_eq!(next.events_after("p-1", 0).await.expect("events").len(), 2);
    next.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_after_an_intact_header_is_store_open_when_the_registry_opens() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("scribbled.db");
    write_store(&path, 40).await;
    let mut bytes = std::fs::read(&path).expect("read the store");
    // Page 1 (the header and the table list) stays; every table's pages go.
    let page_size = usize::from(u16::from_be_bytes([bytes[16], bytes[17]]));
    let length = bytes.len();
    bytes.splice(page_size.., garbage(length - page_size));
    std::fs::write(&path, &bytes).expect("write the scribbled copy");

    assert_store_open(&registry_open_error(&path).await, &path);
    // The failed open released the file: the next one fails the same way,
    // not with `StoreLocked`.
    assert_store_open(&registry_open_error(&path).await, &path);
    // The read-only inspector opens (the header is fine) and its first read
    // of the tables fails with a typed error.
    let inspector = SqliteInspector::open_read_only(&path).expect("the header is intact");
    assert!(matches!(inspector.counts(), Err(RegistryError::Storage { .. })));
    assert!(matches!(inspector.process("p-001"), Err(RegistryError::Storage { .. })));
    drop(inspector);
    assert_eq!(std::fs::read(&path).expect("read back"), bytes, "the file was written to");
}

/// Makes a file unwritable for this process: mode 0444, and where the mode
/// is not enough (root), the immutable attribute too. Undone on drop, so
/// the temporary directory can be removed.
#[cfg(unix)]
struct Unwritable {
    path: PathBuf,
    immutable: bool,
}

#[cfg(unix)]
impl Unwritable {
    /// `None` when neither works here (root without `chattr`).
    fn make(path: &Path) -> Option<Self> {
        use std::os::unix::fs::PermissionsExt;

        let writable = || std::fs::OpenOptions::new().write(true).open(path).is_ok();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444)).expect("chmod 0444");
        let mut guard = Self { path: path.to_owned(), immutable: false };
        if !writable() {
            return Some(guard);
        }
        let chattr = std::process::Command::new("chattr").arg("+i").arg(path).output();
        guard.immutable = chattr.is_ok_and(|output| output.status.success());
        (guard.immutable && !writable()).then_some(guard)
    }
}

#[cfg(unix)]
impl Drop for Unwritable {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;

        if self.immutable {
            let _ = std::process::Command::new("chattr").arg("-i").arg(&self.path).status();
        }
        let _ = std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o644));
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_file_that_cannot_be_written_is_store_open_but_can_be_inspected() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("unwritable.db");
    write_store(&path, 3).await;
    let before = std::fs::read(&path).expect("read");
    let Some(unwritable) = Unwritable::make(&path) else {
        eprintln!("skipped: this process cannot make a file unwritable to itself (root without chattr)");
        return;
    };

    // SQLite would open it read-only without a word, and every commit
    // would fail later: the store refuses it at open instead.
    for error in [store_open_error(&path), registry_open_error(&path).await] {
        assert_store_open(&error, &path);
        assert!(error.to_string().contains("not writable"), "{error}");
    }
    // Reading needs no write access to the database.
    let inspector = SqliteInspector::open_read_only(&path).expect("inspect an unwritable file");
    let counts = inspector.counts().expect("counts");
    assert_eq!((counts.running, counts.completed), (2, 1));
    drop(inspector);
    drop(unwritable);
    assert_eq!(std::fs::read(&path).expect("read back"), before);
}
