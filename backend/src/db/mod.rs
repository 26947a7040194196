//! Storage: one database per service, SQLite in embedded mode and
//! PostgreSQL in distributed mode, behind one pool type.
//!
//! Queries are written once in the SQL both dialects share (`$1`
//! placeholders, `ON CONFLICT`, `RETURNING`); where they differ (row locks),
//! [`Dialect`] says which to use. Every table belongs to exactly one service.

pub mod batch;
pub mod checkpoint;
pub mod migrate;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Connection, Executor};

/// Which SQL dialect a pool speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// ` FOR UPDATE` where the dialect has row locks; SQLite serializes
    /// writers instead.
    pub fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// ` FOR UPDATE SKIP LOCKED` where the dialect has it, so that several
    /// instances sweeping the same table split the rows; SQLite serializes
    /// writers instead.
    pub fn for_update_skip_locked(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// The dialect of the database behind `connection`.
    pub fn of(connection: &sqlx::AnyConnection) -> Dialect {
        if connection.backend_name() == <sqlx::Sqlite as sqlx::Database>::NAME {
            Dialect::Sqlite
        } else {
            Dialect::Postgres
        }
    }
}

/// A service's database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    /// Where reports that read a whole table run ([`Db::reports`]).
    reports: AnyPool,
    dialect: Dialect,
    /// SQLite: the background checkpoints, which stop with the last clone.
    _checkpointer: Option<Arc<checkpoint::Checkpointer>>,
}

/// A transaction on a service's database that knows its SQL dialect, so
/// that the statements run in it can spell row locks and placeholders
/// without being handed the [`Db`] as well. Dereferences to the connection
/// for `sqlx` statements: `query.execute(&mut **tx)`.
pub struct Tx {
    inner: sqlx::Transaction<'static, sqlx::Any>,
    dialect: Dialect,
}

impl Tx {
    /// ` FOR UPDATE` where the dialect has row locks; SQLite serializes
    /// writers instead.
    pub fn for_update(&self) -> &'static str {
        self.dialect.for_update()
    }

    /// ` FOR UPDATE SKIP LOCKED` where the dialect has it, so that several
    /// instances sweeping the same table split the rows.
    pub fn for_update_skip_locked(&self) -> &'static str {
        self.dialect.for_update_skip_locked()
    }

    /// How the statements of multi-row [`batch`]es spell placeholders.
    pub fn placeholders(&self) -> batch::Placeholders {
        self.dialect.into()
    }

    /// Makes every statement of the transaction permanent.
    ///
    /// # Errors
    ///
    /// The database refused the commit or could not be reached; whether it
    /// took effect is then unknown.
    pub async fn commit(self) -> Result<(), StoreError> {
        Ok(self.inner.commit().await?)
    }

    /// Undoes every statement of the transaction.
    ///
    /// # Errors
    ///
    /// The database could not be reached (it rolls back by itself then).
    pub async fn rollback(self) -> Result<(), StoreError> {
        Ok(self.inner.rollback().await?)
    }
}

impl std::ops::Deref for Tx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &sqlx::AnyConnection {
        &self.inner
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.inner
    }
}

/// Why storage failed, in the terms its callers act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database is unreachable, restarting, busy, or chose this
    /// transaction as a deadlock or serialization victim: the same work
    /// succeeds later ([`is_transient`]).
    #[error("database unavailable: {0}")]
    Transient(#[source] sqlx::Error),
    /// A constraint refused the write (another writer got there first, or
    /// a row breaks a rule of the schema).
    #[error("database constraint refused the write: {0}")]
    Conflict(#[source] sqlx::Error),
    /// What is stored cannot be read as the code expects, or a statement is
    /// wrong for the schema: retrying the same work will not help.
    #[error("stored data or statement is broken: {0}")]
    Corrupt(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> StoreError {
        if is_transient(&error) {
            return StoreError::Transient(error);
        }
        let constraint = match &error {
            sqlx::Error::Database(database) => matches!(
                database.kind(),
                sqlx::error::ErrorKind::UniqueViolation
                    | sqlx::error::ErrorKind::ForeignKeyViolation
                    | sqlx::error::ErrorKind::NotNullViolation
                    | sqlx::error::ErrorKind::CheckViolation
            ),
            _ => false,
        };
        if constraint {
            StoreError::Conflict(error)
        } else {
            StoreError::Corrupt(error)
        }
    }
}

impl StoreError {
    /// A stored value that cannot be read back.
    pub fn corrupt(column: &str, problem: impl Into<String>) -> StoreError {
        StoreError::Corrupt(sqlx::Error::ColumnDecode {
            index: column.to_owned(),
            source: problem.into().into(),
        })
    }
}

impl Db {
    /// Opens (creating if needed) the SQLite file at `path`, in WAL mode.
    /// One connection: SQLite has one writer anyway, and a single connection
    /// never meets a busy database. A second one checkpoints the log in the
    /// background ([`checkpoint`]).
    ///
    /// # Errors
    ///
    /// The file cannot be opened or created, or a pragma is refused.
    pub async fn sqlite(path: &Path) -> Result<Db, sqlx::Error> {
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}?mode=rwc", encode_path(path));
        let options: AnyConnectOptions = url.parse()?;
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            // The pool's health check would cost a round trip to the
            // connection's thread before every statement; a broken file shows
            // in the statement's own error.
            .test_before_acquire(false)
            .max_lifetime(None)
            .after_connect(|connection, _| {
                Box::pin(async move {
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = NORMAL",
                        "PRAGMA busy_timeout = 5000",
                        "PRAGMA foreign_keys = ON",
                        "PRAGMA temp_store = MEMORY",
                    ] {
                        connection.execute(pragma).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let checkpointer = checkpoint::start(&url.parse()?).await?;
        // Opened at the first report and closed a minute after the last.
        let reports = AnyPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .idle_timeout(Some(Duration::from_secs(60)))
            .test_before_acquire(false)
            .connect_lazy_with(format!("sqlite://{}?mode=ro", encode_path(path)).parse()?);
        Ok(Db {
            pool,
            reports,
            dialect: Dialect::Sqlite,
            _checkpointer: Some(Arc::new(checkpointer)),
        })
    }

    /// Connects to PostgreSQL at `url` with at most `max_connections`, with
    /// every table in `schema` (created if missing), so that services
    /// sharing a database never share a table.
    ///
    /// # Errors
    ///
    /// `schema` is not a plain identifier ([`sqlx::Error::Configuration`]), the
    /// URL is malformed, or the server cannot be reached or refuses the login.
    pub async fn postgres(
        url: &str,
        schema: &str,
        max_connections: u32,
    ) -> Result<Db, sqlx::Error> {
        sqlx::any::install_default_drivers();
        if !is_identifier(schema) {
            return Err(sqlx::Error::Configuration(
                format!("`{schema}` is not a schema name").into(),
            ));
        }
        let options: AnyConnectOptions = url.parse()?;
        let mut connection = sqlx::AnyConnection::connect_with(&options).await?;
        let created = sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}"
        )))
        .execute(&mut connection)
        .await;
        match created {
            // Another instance creating it at the same moment is fine.
            Err(sqlx::Error::Database(error))
                if matches!(error.code().as_deref(), Some("23505" | "42P06")) => {}
            other => {
                other?;
            }
        }
        connection.close().await?;
        let search_path = format!("SET search_path TO {schema}");
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            // sqlx checks every connection as it comes back to the pool; a
            // second check on the way out would cost a round trip per
            // transaction, and a connection lost in between fails its
            // statement with an error that is retried (`is_transient`).
            .test_before_acquire(false)
            .after_connect(move |connection, _| {
                let search_path = search_path.clone();
                Box::pin(async move {
                    connection.execute(sqlx::AssertSqlSafe(search_path)).await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Db {
            reports: pool.clone(),
            pool,
            dialect: Dialect::Postgres,
            _checkpointer: None,
        })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The pool for reports that read a whole table, such as the gauges of
    /// `/metrics`. On SQLite, a read-only connection of their own: the
    /// service's one connection is never held while a report reads (a
    /// reader does not block the writer in WAL mode). On PostgreSQL, the
    /// service's pool, whose readers never block its writers either.
    pub fn reports(&self) -> &AnyPool {
        &self.reports
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Starts a transaction.
    ///
    /// # Errors
    ///
    /// No connection could be had ([`StoreError::Transient`] while the
    /// database is unreachable or the pool exhausted).
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(Tx {
            inner: self.pool.begin().await?,
            dialect: self.dialect,
        })
    }

    /// How the statements of multi-row [`batch`]es spell placeholders.
    pub fn placeholders(&self) -> batch::Placeholders {
        self.dialect.into()
    }

    /// Whether the database answers (for health checks).
    pub async fn is_healthy(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Whether `name` is a plain SQL identifier: lower-case letters, digits and
/// `_`, not starting with a digit.
fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The URL with its password replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Percent-encodes the characters of a path that a URL would misread.
fn encode_path(path: &Path) -> String {
    let text = path.to_string_lossy();
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'/' | b'.' | b'-' | b'_' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Whether `error` comes from the infrastructure rather than the data: the
/// database is unreachable, restarting, busy, or chose this transaction as a
/// deadlock or serialization victim. Such work is retried, never given up.
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(database) => {
            let code = database.code();
            let code = code.as_deref().unwrap_or("");
            if database
                .try_downcast_ref::<sqlx::sqlite::SqliteError>()
                .is_some()
            {
                // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with extended codes.
                return code.parse::<i64>().is_ok_and(|n| matches!(n & 0xff, 5 | 6));
            }
            // PostgreSQL: serialization failure, deadlock, too many
            // connections, connection exceptions (08…), shutting down (57P…).
            matches!(code, "40001" | "40P01" | "53300")
                || code.starts_with("08")
                || code.starts_with("57P")
        }
        _ => false,
    }
}

/// How many rows of `table` have each value of `column`, by value: what the
/// per-status gauges of `/metrics` show. Both names are the caller's
/// constants, never input. It reads the whole table, on [`Db::reports`].
///
/// # Errors
///
/// The count failed.
pub async fn count_by(
    db: &Db,
    table: &'static str,
    column: &'static str,
) -> Result<Vec<(String, i64)>, StoreError> {
    let sql = format!(
        "SELECT {column} AS value, COUNT(*) AS n FROM {table} GROUP BY {column} ORDER BY {column}"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(db.reports())
        .await?;
    rows.iter()
        .map(|row| {
            use sqlx::Row;
            Ok((row.try_get("value")?, row.try_get("n")?))
        })
        .collect()
}

/// Reads a column that must hold one of a closed set of names.
///
/// # Errors
///
/// [`sqlx::Error::ColumnDecode`] naming `column` when the value is not one of
/// the names.
pub fn parse_column<T: std::str::FromStr>(value: &str, column: &str) -> Result<T, sqlx::Error>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    value.parse().map_err(|error| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: Box::new(error),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://shop:hunter2@db:5432/shop"),
            "postgres://shop:***@db:5432/shop"
        );
        assert_eq!(redact("postgres://db/shop"), "postgres://db/shop");
        assert!(is_identifier("shop_order"));
        assert!(!is_identifier("order; drop"));
    }

    #[test]
    fn paths_with_spaces_become_valid_urls() {
        assert_eq!(
            encode_path(Path::new("/tmp/my data/order.sqlite")),
            "/tmp/my%20data/order.sqlite"
        );
    }

    #[tokio::test]
    async fn sqlite_database_opens_in_wal_mode_even_under_a_path_with_spaces() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("with space").join("x.sqlite");
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let db = Db::sqlite(&path).await.expect("opens");
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(db.pool())
            .await
            .expect("pragma");
        assert_eq!(mode, "wal");
        assert!(path.exists());
        // Temporary tables and statement journals stay in memory (2).
        let temp_store: i64 = sqlx::query_scalar("PRAGMA temp_store")
            .fetch_one(db.pool())
            .await
            .expect("pragma");
        assert_eq!(temp_store, 2);
    }

    /// A database with table `t` of three rows, two `A` and one `B`.
    async fn counted(dir: &Path) -> Db {
        let db = Db::sqlite(&dir.join("x.sqlite")).await.expect("opens");
        for sql in [
            "CREATE TABLE t (status TEXT NOT NULL)",
            "INSERT INTO t VALUES ('A'), ('A'), ('B')",
        ] {
            sqlx::query(sql).execute(db.pool()).await.expect("setup");
        }
        db
    }

    /// The per-status gauges of `/metrics` read a whole table; the
    /// service's one connection stays free for its work meanwhile, and
    /// they see only what is committed.
    #[tokio::test]
    async fn counting_rows_does_not_wait_for_the_services_connection() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = counted(dir.path()).await;
        let mut tx = db.pool().begin().await.expect("begin");
        sqlx::query("INSERT INTO t VALUES ('B')")
            .execute(&mut *tx)
            .await
            .expect("insert");
        // The service's only connection is in this open transaction.
        let counts = tokio::time::timeout(Duration::from_secs(2), count_by(&db, "t", "status"))
            .await
            .expect("the count does not wait for the open transaction")
            .expect("counts");
        assert_eq!(counts, vec![("A".to_owned(), 2), ("B".to_owned(), 1)]);
        tx.commit().await.expect("commit");
        let counts = count_by(&db, "t", "status").await.expect("counts");
        assert_eq!(counts, vec![("A".to_owned(), 2), ("B".to_owned(), 2)]);
    }

    #[tokio::test]
    async fn the_counting_connection_cannot_write() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = counted(dir.path()).await;
        let refused = sqlx::query("DELETE FROM t").execute(db.reports()).await;
        assert!(refused.is_err(), "{refused:?}");
        let counts = count_by(&db, "t", "status").await.expect("counts");
        assert_eq!(counts.len(), 2, "nothing deleted: {counts:?}");
    }

    #[tokio::test]
    async fn sqlite_batches_bind_unnamed_placeholders_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::sqlite(&dir.path().join("x.sqlite"))
            .await
            .expect("opens");
        assert_eq!(db.placeholders(), batch::Placeholders::Question);
        let mut tx = db.begin().await.expect("begin");
        assert_eq!(batch::Placeholders::of(&tx), batch::Placeholders::Question);
        sqlx::query("CREATE TABLE pairs (a INTEGER, b TEXT)")
            .execute(&mut *tx)
            .await
            .expect("create");
        let sql = format!(
            "INSERT INTO pairs (a, b) VALUES {}",
            batch::values(64, 2, batch::Placeholders::of(&tx))
        );
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
        for a in 0..64_i64 {
            insert = insert.bind(a).bind(format!("row {a}"));
        }
        insert.execute(&mut *tx).await.expect("insert");
        let sql = format!(
            "SELECT a, b FROM pairs WHERE a IN ({}) ORDER BY a",
            batch::in_list(3, batch::Placeholders::of(&tx))
        );
        let rows: Vec<(i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(5_i64)
            .bind(63_i64)
            .bind(0_i64)
            .fetch_all(&mut *tx)
            .await
            .expect("select");
        assert_eq!(
            rows,
            [
                (0, "row 0".into()),
                (5, "row 5".into()),
                (63, "row 63".into())
            ]
        );
    }
}
