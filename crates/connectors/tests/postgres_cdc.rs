//! Change data capture against the local PostgreSQL (`DATABASE_URL`, default
//! postgres://postgres@127.0.0.1:5432/postgres, with `wal_level = logical`, which
//! `scripts/services.sh` sets). Each test works in a database of its own, dropped with its
//! replication slots at the end, whether the test passed or not; a later run drops those of test
//! processes that died (a slot left behind would hold WAL forever).

use std::{
    panic::AssertUnwindSafe,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{FutureExt, StreamExt, future::BoxFuture};
use serde_json::{Value as Json, json};
use syncline_connectors::postgres::{
    PostgresConfig,
    cdc::{Capture, Cell, ChangeKind, ChangeSet, Names},
};
use syncline_core::{
    config::Deadlines,
    connector::{Context, ErrorClass, ReadEvent, ReadRequest, Readable},
    egress::Egress,
    record::Value,
};
use tokio_postgres::{Client, NoTls};

fn server_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap_or_else(|e| panic!("{url}: {e}"));
    tokio::spawn(connection);
    client
}

/// Prefix of the databases and roles of these tests, followed by the test process's id.
const PREFIX: &str = "sl_cdc_";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A database of the test's own.
struct Db {
    name: String,
    /// A superuser connection to it.
    admin: Client,
    ctx: Context,
    url: url::Url,
}

impl Db {
    fn config_json(&self, user: &str) -> Json {
        json!({
            "hostname": self.url.host_str().unwrap_or("127.0.0.1"), "port": self.url.port().unwrap_or(5432),
            "database": self.name, "username": user, "ssl": false,
        })
    }

    fn superuser(&self) -> String {
        if self.url.username().is_empty() { "postgres".into() } else { self.url.username().to_owned() }
    }

    fn config(&self) -> PostgresConfig {
        serde_json::from_value(self.config_json(&self.superuser())).expect("a PostgreSQL configuration")
    }

    /// A capture through new names, prepared for `tables`.
    async fn capture(&self, tables: &[&str]) -> Capture {
        let capture = Capture::connect(&self.ctx, &self.config(), Names::for_bulk_sync(uuid::Uuid::new_v4()))
            .await
            .expect("the capture connects");
        capture.prepare(&tables.iter().map(|t| t.to_string()).collect::<Vec<_>>()).await.expect("prepare");
        capture
    }

    async fn run(&self, sql: &str) {
        self.admin.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Every row of `table` as the PostgreSQL source reads it.
    async fn read(&self, table: &str, fields: &[String]) -> Vec<Vec<Value>> {
        let connector = syncline_connectors::get("postgresql").expect("postgresql is registered");
        let source = connector.source(&self.ctx, &self.config_json(&self.superuser())).expect("a source");
        let request = ReadRequest::new(Readable::Stream(table.into()), fields.to_vec(), 100, 1 << 20);
        let mut reading = source.read(request).await.expect("the read starts");
        let mut rows = Vec::new();
        while let Some(event) = reading.events.next().await {
            if let ReadEvent::Batch(batch) = event.expect("the read goes on") {
                rows.extend(batch.records().map(|r| r.values().expect("every value decodes")));
            }
        }
        rows
    }
}

fn context() -> Context {
    let deadlines =
        Deadlines { connect: Duration::from_secs(10), query: Duration::from_secs(30), idle: Duration::from_secs(120) };
    Context::new(Arc::new(Egress::new(&server_url(), vec![], vec![])), deadlines)
}

/// Drops a test database: first ends its sessions and drops its slots (a database with a
/// replication slot cannot be dropped).
async fn drop_database(server: &Client, name: &str) {
    for _ in 0..100 {
        let ended =
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()";
        let _ = server.execute(ended, &[&name]).await;
        let slots =
            "select pg_drop_replication_slot(slot_name) from pg_replication_slots where database = $1 and not active";
        let _ = server.execute(slots, &[&name]).await;
        let left = server.query_one("select count(*) from pg_replication_slots where database = $1", &[&name]).await;
        if left.is_ok_and(|row| row.get::<_, i64>(0) == 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server
        .batch_execute(&format!("drop database if exists {name} with (force)"))
        .await
        .expect("drop the test database");
}

/// Whether the test process named in `name` (`sl_cdc_<pid>_…`) is gone.
fn orphaned(name: &str) -> bool {
    let pid = name.strip_prefix(PREFIX).and_then(|rest| rest.split('_').next()).unwrap_or_default();
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// Runs `test` in a fresh database and drops it afterwards, first dropping what test processes
/// that died left behind.
async fn with_db<F>(test: F)
where
    F: for<'a> FnOnce(&'a Db) -> BoxFuture<'a, ()>,
{
    let server = connect(&server_url()).await;
    let pattern = format!("{}%", PREFIX.replace('_', "\\_"));
    let stale = server.query("select datname::text from pg_database where datname like $1", &[&pattern]).await;
    for name in stale.expect("pg_database").iter().map(|r| r.get::<_, String>(0)).filter(|n| orphaned(n)) {
        drop_database(&server, &name).await;
    }
    let roles = server.query("select rolname::text from pg_roles where rolname like $1", &[&pattern]).await;
    for name in roles.expect("pg_roles").iter().map(|r| r.get::<_, String>(0)).filter(|n| orphaned(n)) {
        let _ = server.batch_execute(&format!("drop role if exists {name}")).await;
    }

    let name = format!("{PREFIX}{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
    server.batch_execute(&format!("create database {name}")).await.expect("create the test database");
    let mut url = url::Url::parse(&server_url()).expect("DATABASE_URL is a URL");
    url.set_path(&name);
    let db = Db { admin: connect(url.as_str()).await, name: name.clone(), ctx: context(), url };
    let outcome = AssertUnwindSafe(test(&db)).catch_unwind().await;
    drop(db);
    drop_database(&server, &name).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// A test that runs `$body` with `$db`, a database of its own.
macro_rules! db_test {
    ($name:ident, |$db:ident| $body:block) => {
        #[tokio::test]
        async fn $name() {
            with_db(|$db| FutureExt::boxed(async move $body)).await;
        }
    };
}

/// Each change as its table's name and kind.
fn kinds(set: &ChangeSet) -> Vec<(String, ChangeKind)> {
    set.changes().map(|c| (c.table.name.clone(), c.kind.clone())).collect()
}

fn values(row: &[Cell]) -> Vec<Value> {
    row.iter()
        .map(|cell| match cell {
            Cell::Value(value) => value.clone(),
            Cell::Unchanged => panic!("an unchanged value where every value was expected"),
        })
        .collect()
}

fn int(v: i64) -> Value {
    Value::Int(v)
}

fn text(v: &str) -> Value {
    Value::Text(v.into())
}

fn cells(values: &[Value]) -> Vec<Cell> {
    values.iter().cloned().map(Cell::Value).collect()
}

db_test!(changes_of_every_type_come_back_as_the_source_reads_them, |db| {
    db.run(
        "create table every (id int primary key, big bigint, amount numeric(12,2), free numeric, note text,
            at timestamptz, doc jsonb, flag bool, raw bytea, uid uuid, ints int[], words text[], day date,
            ratio float8, code char(4), span interval, label varchar(20), small int2, clock time, local timestamp,
            r real, huge float8, tags varchar[])",
    )
    .await;
    let capture = db.capture(&["every"]).await;
    db.run(
        r#"insert into every values
             (1, 9000000000, 12.50, 0.0005, 'naïve 🎉 ''q'' "d"', '1969-07-20 20:17:40.123456+00',
              '{"a": [1, "x"], "b": null}', true, '\x00ff01', '01234567-89ab-cdef-0123-456789abcdef',
              '{1,NULL,3}', '{"a b","é",NULL}', '2024-02-29', -0.1, 'ab', '1 day 2 hours', 'v', 7,
              '20:17:40.123456', '1969-07-20 20:17:40.123456', 1.5, '-Infinity', '{a,"b c"}'),
             (2, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null,
              null, null, null, null, null, null)"#,
    )
    .await;
    let set = capture.poll(10_000).await.expect("poll");
    let table = set.changes().next().expect("a change").table.clone();
    let fields: Vec<String> = table.fields.iter().map(|f| f.name.clone()).collect();
    assert_eq!((table.name.as_str(), table.key.as_slice()), ("public.every", &[0][..]));
    let inserted: Vec<Vec<Value>> = kinds(&set)
        .into_iter()
        .map(|(_, kind)| match kind {
            ChangeKind::Insert(row) => values(&row),
            other => panic!("expected an insert, got {other:?}"),
        })
        .collect();
    assert_eq!(inserted, db.read("public.every", &fields).await, "the changes equal what the source reads");

    let at: chrono::DateTime<chrono::Utc> = "1969-07-20T20:17:40.123456Z".parse().expect("a timestamp");
    let expected = vec![
        int(1),
        int(9_000_000_000),
        Value::Decimal("12.50".into()),
        Value::Decimal("0.0005".into()),
        text("naïve 🎉 'q' \"d\""),
        Value::TimestampTz(at),
        Value::Json(json!({"a": [1, "x"], "b": null})),
        Value::Bool(true),
        Value::Bytes(vec![0, 255, 1]),
        Value::Uuid("01234567-89ab-cdef-0123-456789abcdef".parse().expect("a uuid")),
        Value::List(vec![int(1), Value::Null, int(3)]),
        Value::List(vec![text("a b"), text("é"), Value::Null]),
        Value::Date("2024-02-29".parse().expect("a date")),
        Value::Float(-0.1),
        text("ab"),
        text("1 day 02:00:00"),
        text("v"),
        int(7),
        Value::Time(at.time()),
        Value::Timestamp(at.naive_utc()),
        Value::Float(1.5),
        Value::Float(f64::NEG_INFINITY),
        text(r#"{a,"b c"}"#),
    ];
    assert_eq!(inserted[0], expected);
    let mut nulls = vec![Value::Null; expected.len()];
    nulls[0] = int(2);
    assert_eq!(inserted[1], nulls);

    capture.confirm(set.end.expect("an end")).await.expect("confirm");
    db.run("update every set note = 'changed', ints = '{}', amount = -1 where id = 1; delete from every where id = 2")
        .await;
    db.run("truncate every").await;
    let set = capture.poll(10_000).await.expect("poll");
    let changes = kinds(&set);
    assert_eq!(changes.len(), 3, "{changes:?}");
    let ChangeKind::Update { row, old_key: None } = &changes[0].1 else { panic!("an update: {:?}", changes[0]) };
    let updated = values(row);
    assert_eq!(
        (&updated[2], &updated[4], &updated[10]),
        (&Value::Decimal("-1.00".into()), &text("changed"), &Value::List(vec![]))
    );
    assert_eq!(changes[1].1, ChangeKind::Delete { key: vec![int(2)] });
    assert_eq!(changes[2], ("public.every".into(), ChangeKind::Truncate));
    capture.remove().await.expect("remove");
});

db_test!(a_key_change_reports_the_old_key, |db| {
    db.run("create table pairs (a int, b text, v int, primary key (a, b))").await;
    let capture = db.capture(&["pairs"]).await;
    db.run("insert into pairs values (1, 'x', 0)").await;
    db.run("update pairs set v = 1 where a = 1").await;
    db.run("update pairs set b = 'y', v = 2 where a = 1").await;
    db.run("delete from pairs").await;
    let changes: Vec<ChangeKind> = kinds(&capture.poll(100).await.expect("poll")).into_iter().map(|(_, k)| k).collect();
    assert_eq!(
        changes,
        vec![
            ChangeKind::Insert(cells(&[int(1), text("x"), int(0)])),
            ChangeKind::Update { row: cells(&[int(1), text("x"), int(1)]), old_key: None },
            ChangeKind::Update { row: cells(&[int(1), text("y"), int(2)]), old_key: Some(vec![int(1), text("x")]) },
            ChangeKind::Delete { key: vec![int(1), text("y")] },
        ]
    );
    capture.remove().await.expect("remove");
});

db_test!(transactions_come_back_whole, |db| {
    db.run("create table a (id int primary key); create table b (id int primary key, n int)").await;
    let capture = db.capture(&["a", "b"]).await;
    db.run(
        "begin; insert into a select generate_series(1, 50); insert into b values (1, 0);
         update b set n = 1; delete from a where id > 40; commit",
    )
    .await;
    db.run("insert into b values (2, 0)").await;
    // A limit of one message still brings the first transaction whole, and only it.
    let first = capture.poll(1).await.expect("poll");
    assert_eq!(first.transactions.len(), 1);
    let tables: Vec<String> = kinds(&first).into_iter().map(|(table, _)| table).collect();
    assert_eq!(tables.len(), 50 + 2 + 10);
    assert_eq!((tables[0].as_str(), tables[50].as_str(), tables[61].as_str()), ("public.a", "public.b", "public.a"));
    assert_eq!(first.end, Some(first.transactions[0].end_lsn));
    capture.confirm(first.end.expect("an end")).await.expect("confirm");
    let second = capture.poll(1).await.expect("poll");
    assert_eq!(kinds(&second), vec![("public.b".into(), ChangeKind::Insert(cells(&[int(2), int(0)])))]);
    capture.remove().await.expect("remove");
});

db_test!(only_confirmed_changes_are_gone, |db| {
    db.run("create table t (id int primary key)").await;
    let names = Names::for_bulk_sync(uuid::Uuid::new_v4());
    let capture = Capture::connect(&db.ctx, &db.config(), names.clone()).await.expect("connect");
    let start = capture.prepare(&["public.t".into()]).await.expect("prepare");
    assert_eq!(capture.prepare(&["public.t".into()]).await.expect("prepare again"), start, "repeatable");
    db.run("insert into t values (1)").await;
    db.run("insert into t values (2)").await;
    let set = capture.poll(1000).await.expect("poll");
    assert_eq!(set.transactions.len(), 2);
    // (`end` may differ: the rest of the server writes WAL too.)
    let again = capture.poll(1000).await.expect("poll again");
    assert_eq!(again.transactions, set.transactions, "not confirmed: the same changes");

    // A worker killed before confirming: the next one gets the same changes.
    drop(capture);
    let capture = Capture::connect(&db.ctx, &db.config(), names.clone()).await.expect("connect");
    assert_eq!(capture.poll(1000).await.expect("poll after a restart").transactions, set.transactions);

    // Confirming the first transaction leaves the second.
    capture.confirm(set.transactions[0].end_lsn).await.expect("confirm");
    let rest = capture.poll(1000).await.expect("poll");
    assert_eq!(rest.transactions, set.transactions[1..].to_vec());
    capture.confirm(rest.end.expect("an end")).await.expect("confirm");
    capture.confirm(set.transactions[0].end_lsn).await.expect("confirming an older position is a no-op");
    let none = capture.poll(1000).await.expect("poll");
    assert!(none.transactions.is_empty(), "{none:?}");
    db.run("insert into t values (3)").await;
    let later = capture.poll(1000).await.expect("poll");
    assert_eq!(kinds(&later), vec![("public.t".into(), ChangeKind::Insert(cells(&[int(3)])))]);
    capture.remove().await.expect("remove");
});

db_test!(changes_to_other_tables_still_move_the_slot, |db| {
    db.run("create table watched (id int primary key); create table other (id int primary key)").await;
    let capture = db.capture(&["watched"]).await;
    db.run("insert into other select generate_series(1, 1000)").await;
    let set = capture.poll(1000).await.expect("poll");
    assert!(set.transactions.is_empty());
    let end = set.end.expect("the read position, though nothing was published");
    capture.confirm(end).await.expect("confirm");
    let row = db.admin.query_one(
        "select confirmed_flush_lsn::text from pg_replication_slots where database = current_database()",
        &[],
    );
    assert_eq!(row.await.expect("the slot").get::<_, String>(0), end.to_string());
    capture.remove().await.expect("remove");
});

db_test!(retained_wal_grows_with_unconfirmed_writes, |db| {
    db.run("create table t (id int primary key, pad text)").await;
    let capture = db.capture(&["t"]).await;
    let before = capture.retained_bytes().await.expect("retained");
    db.run("insert into t select i, repeat('x', 200) from generate_series(1, 10000) i").await;
    let after = capture.retained_bytes().await.expect("retained");
    assert!(after >= before + 2_000_000, "{before} → {after} bytes");
    capture.remove().await.expect("remove");
});

db_test!(remove_drops_slot_and_publication, |db| {
    db.run("create table t (id int primary key)").await;
    let capture = db.capture(&["t"]).await;
    capture.remove().await.expect("remove");
    let count = |sql: &'static str| async move { db.admin.query_one(sql, &[]).await.expect(sql).get::<_, i64>(0) };
    assert_eq!(count("select count(*) from pg_replication_slots where database = current_database()").await, 0);
    assert_eq!(count("select count(*) from pg_publication").await, 0);
    capture.remove().await.expect("removing again is no error");
    assert_eq!(capture.poll(10).await.map_err(|e| e.class).expect_err("no slot"), ErrorClass::NotFound);
    assert_eq!(capture.retained_bytes().await.map_err(|e| e.class).expect_err("no slot"), ErrorClass::NotFound);
    let lsn = "0/1".parse().expect("an LSN");
    assert_eq!(capture.confirm(lsn).await.map_err(|e| e.class).expect_err("no slot"), ErrorClass::NotFound);
});

db_test!(an_unchanged_toasted_value_is_reported_unchanged, |db| {
    db.run(
        "create table docs (id int primary key, body text, n int); alter table docs alter body set storage external",
    )
    .await;
    let capture = db.capture(&["docs"]).await;
    db.run("insert into docs select 1, string_agg(md5(i::text), '') || ' 🎉', 0 from generate_series(1, 5000) i").await;
    db.run("update docs set n = 1").await;
    let changes = kinds(&capture.poll(100).await.expect("poll"));
    let ChangeKind::Insert(row) = &changes[0].1 else { panic!("an insert: {:?}", changes[0]) };
    let Cell::Value(Value::Text(body)) = &row[1] else { panic!("the body: {:?}", row[1]) };
    assert_eq!((body.len(), body.ends_with(" 🎉")), (5000 * 32 + 5, true));
    assert_eq!(
        changes[1].1,
        ChangeKind::Update { row: vec![Cell::Value(int(1)), Cell::Unchanged, Cell::Value(int(1))], old_key: None }
    );
    capture.remove().await.expect("remove");
});

db_test!(tables_need_a_key_or_full_identity, |db| {
    db.run("create table loose (id int, v text); create view seen as select 1 as x").await;
    let capture =
        Capture::connect(&db.ctx, &db.config(), Names::for_bulk_sync(uuid::Uuid::new_v4())).await.expect("connect");
    let error = capture.prepare(&["loose".into()]).await.expect_err("no primary key");
    assert_eq!(error.class, ErrorClass::Config);
    assert!(error.message.contains("REPLICA IDENTITY FULL"), "{}", error.message);
    let missing = capture.prepare(&["public.missing".into()]).await.expect_err("no table");
    assert_eq!(missing.class, ErrorClass::NotFound);
    assert_eq!(capture.prepare(&["seen".into()]).await.expect_err("a view").class, ErrorClass::Config);

    // With every column as the identity, deletes send the whole old row.
    db.run("alter table loose replica identity full; insert into loose values (1, 'a')").await;
    capture.prepare(&["loose".into()]).await.expect("prepare");
    db.run("update loose set v = 'b'; delete from loose").await;
    let changes: Vec<ChangeKind> = kinds(&capture.poll(100).await.expect("poll")).into_iter().map(|(_, k)| k).collect();
    assert_eq!(
        changes,
        vec![
            ChangeKind::Update { row: cells(&[int(1), text("b")]), old_key: Some(vec![int(1), text("a")]) },
            ChangeKind::Delete { key: vec![int(1), text("b")] },
        ]
    );
    capture.remove().await.expect("remove");
});

db_test!(prepare_points_the_publication_at_exactly_the_tables, |db| {
    db.run("create table a (id int primary key); create table b (id int primary key)").await;
    let capture = db.capture(&["a"]).await;
    db.run("insert into a values (1); insert into b values (1)").await;
    let set = capture.poll(100).await.expect("poll");
    assert_eq!(kinds(&set).into_iter().map(|(t, _)| t).collect::<Vec<_>>(), vec!["public.a"]);
    capture.confirm(set.end.expect("an end")).await.expect("confirm");
    capture.prepare(&["b".into()]).await.expect("prepare for b only");
    db.run("insert into a values (2); insert into b values (2)").await;
    let set = capture.poll(100).await.expect("poll");
    assert_eq!(kinds(&set), vec![("public.b".into(), ChangeKind::Insert(cells(&[int(2)])))]);
    capture.remove().await.expect("remove");
});

db_test!(a_role_without_replication_is_refused_naming_the_attribute, |db| {
    let role = format!("{}_plain", db.name);
    db.run(&format!("create role {role} login")).await;
    let config: PostgresConfig = serde_json::from_value(db.config_json(&role)).expect("a configuration");
    let capture =
        Capture::connect(&db.ctx, &config, Names::for_bulk_sync(uuid::Uuid::new_v4())).await.expect("connect");
    let error = capture.prepare(&["t".into()]).await.expect_err("no REPLICATION");
    drop(capture);
    db.run(&format!("drop role {role}")).await;
    assert_eq!(error.class, ErrorClass::Config);
    assert!(error.message.contains("REPLICATION") && error.message.contains(&role), "{}", error.message);
});

db_test!(a_canceled_context_stops_the_capture_and_its_statement, |db| {
    db.run("create table t (id int primary key)").await;
    let ctx = db.ctx.child();
    let capture =
        Capture::connect(&ctx, &db.config(), Names::for_bulk_sync(uuid::Uuid::new_v4())).await.expect("connect");
    capture.prepare(&["t".into()]).await.expect("prepare");
    // One transaction of a million changes takes the server a while to decode.
    db.run("insert into t select generate_series(1, 1000000)").await;
    let cancel = ctx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    let error = capture.poll(10).await.expect_err("canceled");
    assert!(error.message.contains("canceled"), "{}", error.message);
    assert!(started.elapsed() < Duration::from_secs(5), "stopped after {:?}", started.elapsed());
    let peeking = "select count(*) from pg_stat_activity where datname = current_database() and state = 'active'
                   and query like '%peek_binary_changes%' and pid <> pg_backend_pid()";
    let mut running = 1;
    for _ in 0..50 {
        running = db.admin.query_one(peeking, &[]).await.expect("pg_stat_activity").get::<_, i64>(0);
        if running == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(running, 0, "the server stopped decoding");
    assert!(capture.poll(10).await.is_err(), "canceled for good");
});

/// `cargo test -p syncline-connectors --test postgres_cdc -- --ignored --nocapture`: poll and
/// decode 100,000 single-row update transactions, confirming after each poll.
#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn poll_throughput() {
    with_db(|db| {
        FutureExt::boxed(async move {
            db.run("create table t (id int primary key, n int, note text)").await;
            db.run("insert into t select i, 0, 'row ' || i from generate_series(1, 1000) i").await;
            let names = Names::for_bulk_sync(uuid::Uuid::new_v4());
            let capture = Capture::connect(&db.ctx, &db.config(), names.clone()).await.expect("connect");
            capture.prepare(&["t".into()]).await.expect("prepare");
            let started = Instant::now();
            db.run("set synchronous_commit = off").await;
            db.run(
                "do $$ begin for i in 1..100000 loop
                   update t set n = n + 1 where id = i % 1000 + 1; commit;
                 end loop; end $$",
            )
            .await;
            println!("wrote 100000 update transactions in {:.1} s", started.elapsed().as_secs_f64());
            // The server's share: decoding everything into pgoutput messages, without sending them.
            let started = Instant::now();
            let peek = "select count(*) from pg_logical_slot_peek_binary_changes($1, null, null,
                        'proto_version', '1', 'publication_names', $2)";
            let row = db.admin.query_one(peek, &[&names.slot, &names.publication]).await.expect("peek");
            let (messages, server) = (row.get::<_, i64>(0), started.elapsed().as_secs_f64());
            println!("the server decodes the {messages} messages in {server:.2} s");
            let (started, mut updates, mut polls, mut confirming) = (Instant::now(), 0, 0, Duration::ZERO);
            while updates < 100_000 {
                let set = capture.poll(30_000).await.expect("poll");
                updates += set.changes().filter(|c| matches!(c.kind, ChangeKind::Update { .. })).count();
                polls += 1;
                let confirm = Instant::now();
                capture.confirm(set.end.expect("an end")).await.expect("confirm");
                confirming += confirm.elapsed();
            }
            let total = started.elapsed().as_secs_f64();
            let polling = total - confirming.as_secs_f64();
            println!(
                "{updates} updates in {polls} polls: poll+decode {polling:.2} s ({:.0} rows/s), confirm {:.2} s, \
                 together {:.0} rows/s",
                updates as f64 / polling,
                confirming.as_secs_f64(),
                updates as f64 / total
            );
            capture.remove().await.expect("remove");
        })
    })
    .await;
}
