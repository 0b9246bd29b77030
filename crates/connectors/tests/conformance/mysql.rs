//! MariaDB (or MySQL) on the server of `MARIADB_URL` (default the local one, root without a
//! password): a database of its own per check, dropped afterwards.

use std::sync::Arc;

use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use serde_json::{Value as Json, json};
use syncline_connectors::{
    conformance::{Fixture, Rejection},
    mysql,
};
use syncline_core::{
    connector::{DynConnector, ErrorClass, register},
    record::{FieldType, Value},
};

#[path = "../support/mariadb.rs"]
mod server;

use server::admin;

struct MysqlFixture {
    database: String,
}

async fn fixture() -> MysqlFixture {
    let database = format!("sl_conf_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    admin().await.query_drop(format!("create database {database} character set utf8mb4")).await.expect("create");
    MysqlFixture { database }
}

impl MysqlFixture {
    fn config_with(&self, changes: Json) -> Json {
        let mut config = server::config(&self.database);
        if let (Some(config), Some(changes)) = (config.as_object_mut(), changes.as_object()) {
            config.extend(changes.clone());
        }
        config
    }
}

#[async_trait]
impl Fixture for MysqlFixture {
    fn connector(&self) -> Arc<dyn DynConnector> {
        register(mysql::Mysql)
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
        format!("{}.{name}", self.database)
    }

    /// What MariaDB stores and gives back as the same type: not uuids, lists or zoned
    /// timestamps (no such column types), nor unbounded decimals (stored as DECIMAL(65,30)).
    fn types(&self) -> Vec<(FieldType, Value)> {
        let kept = |ty: &FieldType| {
            !matches!(
                ty,
                FieldType::Uuid | FieldType::List(_) | FieldType::TimestampTz | FieldType::Numeric | FieldType::Jsonb
            )
        };
        super::every_type().into_iter().filter(|(ty, _)| kept(ty)).collect()
    }

    fn rejection(&self) -> Rejection {
        let field_type = FieldType::Decimal { precision: 5, scale: 2 };
        let (good, bad) = (Value::Decimal("1.50".into()), Value::Decimal("123456.78".into()));
        Rejection { config: self.config(), field_type, good, bad }
    }

    /// The sequence engine makes rows as they are read.
    fn long_model(&self) -> Json {
        json!({"query": "select seq as id from seq_1_to_1000000000"})
    }

    /// Statements at work on the fixture's database (idle connections do no work).
    async fn open_reads(&self) -> usize {
        let count: Option<i64> = admin()
            .await
            .exec_first(
                "select count(*) from information_schema.processlist where db = ? and command <> 'Sleep'",
                (self.database.as_str(),),
            )
            .await
            .expect("processlist");
        count.unwrap_or_default() as usize
    }

    async fn finish(&self) {
        let _ = admin().await.query_drop(format!("drop database if exists {}", self.database)).await;
    }
}

syncline_connectors::conformance_suite!(fixture().await);
