//! Schema migrations, embedded from `migrations/<scope>/`.
//!
//! Every service database gets the `common` migrations (outbox and inbox)
//! and then its own; the log of the in-process bus gets `bus`. Applied
//! versions are recorded per scope in `schema_migrations`; on PostgreSQL an
//! advisory lock keeps several instances of a service from migrating at
//! once.

use sqlx::{Connection, Database, Executor, Row};
use tracing::Instrument;

use super::{Db, Dialect};
use crate::service::Service;

/// The migrations of `service`'s own tables.
fn migrations_of(service: Service) -> &'static [Migration] {
    match service {
        Service::Gateway => GATEWAY,
        Service::Order => ORDER,
        Service::Stock => STOCK,
        Service::Payment => PAYMENT,
    }
}

/// One version of a scope's schema.
pub(crate) struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    /// `None` in a scope only SQLite holds.
    postgres: Option<&'static str>,
    /// For a database written before its migrations were recorded: a query
    /// that returns a row when the database has what this migration makes
    /// already, which then counts as applied without running.
    found_if: Option<&'static str>,
}

macro_rules! sql_file {
    ($scope:literal, $file:expr) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../migrations/",
            $scope,
            "/",
            $file
        ))
    };
}

/// A migration written in the SQL both dialects share.
macro_rules! portable {
    ($scope:literal, $version:literal, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            sqlite: sql_file!($scope, concat!($name, ".sql")),
            postgres: Some(sql_file!($scope, concat!($name, ".sql"))),
            found_if: None,
        }
    };
}

/// A migration with one file per dialect.
macro_rules! per_dialect {
    ($scope:literal, $version:literal, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            sqlite: sql_file!($scope, concat!($name, ".sqlite.sql")),
            postgres: Some(sql_file!($scope, concat!($name, ".postgres.sql"))),
            found_if: None,
        }
    };
}

/// A migration of a scope only SQLite holds; `found_if` as in [`Migration`].
macro_rules! sqlite_only {
    ($scope:literal, $version:literal, $name:literal, $found_if:expr) => {
        Migration {
            version: $version,
            name: $name,
            sqlite: sql_file!($scope, concat!($name, ".sqlite.sql")),
            postgres: None,
            found_if: $found_if,
        }
    };
}

const COMMON: &[Migration] = &[per_dialect!("common", 1, "0001_outbox_inbox")];
const ORDER: &[Migration] = &[
    portable!("order", 1, "0001_orders"),
    per_dialect!("order", 2, "0002_order_documents"),
    portable!("order", 3, "0003_order_due_at"),
];
const GATEWAY: &[Migration] = &[
    portable!("gateway", 1, "0001_customer_orders"),
    portable!("gateway", 2, "0002_catalog_audit"),
    portable!("gateway", 3, "0003_catalog_audit_order"),
];
const STOCK: &[Migration] = &[
    portable!("stock", 1, "0001_products"),
    per_dialect!("stock", 2, "0002_catalogue_operations"),
];
const PAYMENT: &[Migration] = &[
    portable!("payment", 1, "0001_payments"),
    portable!("payment", 2, "0002_local_payment_status"),
    portable!("payment", 3, "0003_refund_retries_checkout_delays"),
    portable!("payment", 4, "0004_retention_indexes"),
    portable!("payment", 5, "0005_open_sessions_by_expiry"),
];
/// The log of the in-process bus. Logs written before these were recorded
/// have the tables of the first (which creates only what is missing), and
/// the partitioner column of the second if they are recent enough.
pub(crate) const BUS: &[Migration] = &[
    sqlite_only!("bus", 1, "0001_log", None),
    sqlite_only!(
        "bus",
        2,
        "0002_topic_partitioner",
        Some("SELECT 1 FROM pragma_table_info('bus_topics') WHERE name = 'partitioner'")
    ),
    sqlite_only!("bus", 3, "0003_compacted_latest", None),
];

/// Arbitrary constant naming the migration lock among advisory locks.
const MIGRATION_LOCK: i64 = 0x5348_4f50_0001;

impl Db {
    /// Brings the schema of `service` up to date.
    ///
    /// # Errors
    ///
    /// A migration failed (it is rolled back and not recorded), or the database
    /// cannot be reached.
    pub async fn migrate(&self, service: Service) -> Result<(), sqlx::Error> {
        let mut connection = self.pool().acquire().await?;
        if self.dialect() == Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *connection)
                .await?;
        }
        let outcome = run::<sqlx::Any>(
            &mut connection,
            self.dialect(),
            &[("common", COMMON), (service.name(), migrations_of(service))],
        )
        .instrument(tracing::info_span!("migrate", service = service.name()))
        .await;
        if self.dialect() == Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *connection)
                .await?;
        }
        outcome
    }
}

/// Applies, on `connection`, the migrations of each scope that
/// `schema_migrations` does not list yet, each in a transaction of its own
/// that also records it.
///
/// # Errors
///
/// The first statement that fails; the migrations before it stay applied.
pub(crate) async fn run<DB>(
    connection: &mut DB::Connection,
    dialect: Dialect,
    scopes: &[(&str, &[Migration])],
) -> Result<(), sqlx::Error>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'v> &'v str: sqlx::Encode<'v, DB> + sqlx::Type<DB>,
    for<'v> i64: sqlx::Encode<'v, DB> + sqlx::Decode<'v, DB> + sqlx::Type<DB>,
    for<'n> &'n str: sqlx::ColumnIndex<DB::Row>,
{
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            scope TEXT NOT NULL,
            version BIGINT NOT NULL,
            name TEXT NOT NULL,
            applied_at BIGINT NOT NULL,
            PRIMARY KEY (scope, version)
        )",
    )
    .execute(&mut *connection)
    .await?;
    for &(scope, migrations) in scopes {
        let applied: Vec<i64> =
            sqlx::query("SELECT version FROM schema_migrations WHERE scope = $1")
                .bind(scope)
                .fetch_all(&mut *connection)
                .await?
                .iter()
                .map(|row| row.try_get::<i64, _>("version"))
                .collect::<Result<_, _>>()?;
        for migration in migrations.iter().filter(|m| !applied.contains(&m.version)) {
            let sql = match dialect {
                Dialect::Sqlite => migration.sqlite,
                Dialect::Postgres => migration.postgres.ok_or_else(|| {
                    sqlx::Error::Configuration(
                        format!("migration {scope}/{} is for SQLite only", migration.name).into(),
                    )
                })?,
            };
            let found = match migration.found_if {
                Some(query) => sqlx::query(query)
                    .fetch_optional(&mut *connection)
                    .await?
                    .is_some(),
                None => false,
            };
            let mut tx = connection.begin().await?;
            if !found {
                sqlx::raw_sql(sql).execute(&mut *tx).await?;
            }
            sqlx::query(
                "INSERT INTO schema_migrations (scope, version, name, applied_at)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(scope)
            .bind(migration.version)
            .bind(migration.name)
            .bind(shop_shared::time::Timestamp::now().as_millis())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            if found {
                tracing::info!(scope, migration = migration.name, "found migration applied");
            } else {
                tracing::info!(scope, migration = migration.name, "applied migration");
            }
        }
    }
    Ok(())
}
