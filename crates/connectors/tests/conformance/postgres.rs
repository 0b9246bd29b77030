//! PostgreSQL on the local server (`DATABASE_URL`, default postgres://postgres@127.0.0.1:5432):
//! a database of its own per check, dropped afterwards (or by a later run, if the test process
//! died).

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use async_trait::async_trait;
use serde_json::{Value as Json, json};
use syncline_connectors::{
    conformance::{Fixture, Rejection},
    postgres,
};
use syncline_core::{
    connector::{DynConnector, ErrorClass, register},
    record::{FieldType, Value},
};
use tokio_postgres::NoTls;

fn server_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

async fn admin() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&server_url(), NoTls).await.expect("connect to the test server");
    tokio::spawn(connection);
    client
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

struct PostgresFixture {
    database: String,
    host: String,
    port: u16,
    user: String,
}

/// Creates a database for one check, first dropping those of test processes that are gone.
async fn fixture() -> PostgresFixture {
    let admin = admin().await;
    let stale = admin.query("select datname from pg_database where datname like 'sl\\_conf\\_%'", &[]).await;
    for row in stale.unwrap_or_default() {
        let name: String = row.get(0);
        let pid = name.split('_').nth(2).unwrap_or_default();
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = admin.batch_execute(&format!("drop database if exists {name} with (force)")).await;
        }
    }
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let database = format!("sl_conf_{}_{}_{suffix}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
    admin.batch_execute(&format!("create database {database}")).await.expect("create the test database");
    let url = url::Url::parse(&server_url()).expect("DATABASE_URL is a URL");
    PostgresFixture {
        database,
        host: url.host_str().unwrap_or("127.0.0.1").to_owned(),
        port: url.port().unwrap_or(5432),
        user: if url.username().is_empty() { "postgres".into() } else { url.username().to_owned() },
    }
}

impl PostgresFixture {
    fn config_with(&self, changes: Json) -> Json {
        let mut config = json!({
            "hostname": self.host, "port": self.port, "database": self.database, "username": self.user, "ssl": false,
        });
        if let (Some(config), Some(changes)) = (config.as_object_mut(), changes.as_object()) {
            config.extend(changes.clone());
        }
        config
    }
}

#[async_trait]
impl Fixture for PostgresFixture {
    fn connector(&self) -> Arc<dyn DynConnector> {
        register(postgres::Postgres)
    }

    fn config(&self) -> Json {
        self.config_with(json!({}))
    }

    fn bad_configs(&self) -> Vec<(Json, ErrorClass)> {
        vec![
            (self.config_with(json!({"username": "sl_conf_nobody"})), ErrorClass::Auth),
            (self.config_with(json!({"database": "sl_conf_missing"})), ErrorClass::NotFound),
            (self.config_with(json!({"port": 1})), ErrorClass::Transient),
        ]
    }

    fn object(&self, name: &str) -> String {
        format!("public.{name}")
    }

    fn types(&self) -> Vec<(FieldType, Value)> {
        super::every_type()
    }

    fn rejection(&self) -> Rejection {
        let field_type = FieldType::Decimal { precision: 5, scale: 2 };
        let (good, bad) = (Value::Decimal("1.50".into()), Value::Decimal("123456.78".into()));
        Rejection { config: self.config(), field_type, good, bad }
    }

    /// A set-returning function in the select list streams (one in `from` would materialize).
    fn long_model(&self) -> Json {
        json!({"query": "select generate_series(1, 1000000000)::bigint as id"})
    }

    /// Sessions of the connector (`application_name` syncline) on the fixture's database.
    async fn open_reads(&self) -> usize {
        let row = admin()
            .await
            .query_one(
                "select count(*) from pg_stat_activity where datname = $1 and application_name = 'syncline'",
                &[&self.database],
            )
            .await
            .expect("pg_stat_activity");
        row.get::<_, i64>(0) as usize
    }

    async fn finish(&self) {
        let _ = admin().await.batch_execute(&format!("drop database if exists {} with (force)", self.database)).await;
    }
}

syncline_connectors::conformance_suite!(fixture().await);
