//! Schema migrations, embedded from `migrations/<service>/`.
//!
//! Every service database gets the `common` migrations (outbox and inbox)
//! and then its own. Applied versions are recorded per scope in
//! `schema_migrations`; on PostgreSQL an advisory lock keeps several
//! instances of a service from migrating at once.

use sqlx::{Acquire, Row};

use super::{Db, Dialect};
use crate::service::Service;

/// The migrations of `service`'s own tables (the gateway has none).
fn migrations_of(service: Service) -> &'static [Migration] {
    match service {
        Service::Gateway => &[],
        Service::Order => ORDER,
        Service::Stock => STOCK,
        Service::Payment => PAYMENT,
    }
}

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
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
            postgres: sql_file!($scope, concat!($name, ".sql")),
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
            postgres: sql_file!($scope, concat!($name, ".postgres.sql")),
        }
    };
}

const COMMON: &[Migration] = &[per_dialect!("common", 1, "0001_outbox_inbox")];
const ORDER: &[Migration] = &[
    portable!("order", 1, "0001_orders"),
    per_dialect!("order", 2, "0002_order_documents"),
];
const STOCK: &[Migration] = &[portable!("stock", 1, "0001_products")];
const PAYMENT: &[Migration] = &[
    portable!("payment", 1, "0001_payments"),
    portable!("payment", 2, "0002_local_payment_status"),
];

/// Arbitrary constant naming the migration lock among advisory locks.
const MIGRATION_LOCK: i64 = 0x5348_4f50_0001;

impl Db {
    /// Brings the schema of `service` up to date.
    pub async fn migrate(&self, service: Service) -> Result<(), sqlx::Error> {
        let mut connection = self.pool().acquire().await?;
        if self.dialect() == Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *connection)
                .await?;
        }
        let outcome = async {
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
            for (scope, migrations) in
                [("common", COMMON), (service.name(), migrations_of(service))]
            {
                let applied: Vec<i64> =
                    sqlx::query("SELECT version FROM schema_migrations WHERE scope = $1")
                        .bind(scope)
                        .fetch_all(&mut *connection)
                        .await?
                        .iter()
                        .map(|row| row.try_get::<i64, _>("version"))
                        .collect::<Result<_, _>>()?;
                for migration in migrations.iter().filter(|m| !applied.contains(&m.version)) {
                    let sql = match self.dialect() {
                        Dialect::Sqlite => migration.sqlite,
                        Dialect::Postgres => migration.postgres,
                    };
                    let mut tx = connection.begin().await?;
                    sqlx::raw_sql(sql).execute(&mut *tx).await?;
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
                    tracing::info!(
                        service = service.name(),
                        scope,
                        migration = migration.name,
                        "applied migration"
                    );
                }
            }
            Ok::<(), sqlx::Error>(())
        }
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
