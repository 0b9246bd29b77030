//! End-to-end tests: real `syncline` processes against the local PostgreSQL and Redis.
//! Each test has its own state database, Redis key prefix and payload directory.

mod access;
mod api_errors;
mod api_resources;
mod bulk_api;
mod bulk_cdc;
mod bulk_sync;
mod cli;
mod config;
mod deadlines;
mod edge;
mod egress;
mod event_delivery;
mod event_faults;
mod event_sources;
mod faults;
mod ingest;
mod migrations;
mod model_sync;
mod payload_s3;
mod protocol;
mod recovery;
mod scheduler;
mod secrets;
mod store_errors;
mod support;
mod telemetry;
