//! The in-memory reference connector: a fresh dataset namespace per check.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value as Json, json};
use syncline_connectors::{
    conformance::{Fixture, Rejection},
    memory,
};
use syncline_core::{
    connector::{DynConnector, ErrorClass, register},
    record::{FieldType, Value},
};

struct MemoryFixture {
    dataset: String,
}

fn fixture() -> MemoryFixture {
    MemoryFixture { dataset: format!("conformance-{}", uuid::Uuid::new_v4()) }
}

#[async_trait]
impl Fixture for MemoryFixture {
    fn connector(&self) -> Arc<dyn DynConnector> {
        register(memory::Memory)
    }

    fn config(&self) -> Json {
        json!({"dataset": self.dataset, "rows": 5000})
    }

    fn bad_configs(&self) -> Vec<(Json, ErrorClass)> {
        vec![(json!({"dataset": self.dataset, "token": "wrong"}), ErrorClass::Auth)]
    }

    fn object(&self, name: &str) -> String {
        name.to_owned()
    }

    fn types(&self) -> Vec<(FieldType, Value)> {
        super::every_type()
    }

    fn rejection(&self) -> Rejection {
        let config = json!({"dataset": self.dataset, "reject_when_field_equals": {"field": "v", "value": "reject me"}});
        Rejection {
            config,
            field_type: FieldType::Text,
            good: Value::Text("fine".into()),
            bad: Value::Text("reject me".into()),
        }
    }

    fn long_model(&self) -> Json {
        json!({"dataset": self.dataset})
    }

    async fn open_reads(&self) -> usize {
        memory::open_reads(&self.dataset)
    }

    async fn finish(&self) {
        memory::clear(&self.dataset);
    }
}

syncline_connectors::conformance_suite!(fixture());
