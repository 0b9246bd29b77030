//! Model sync semantics against real databases: exact copies, diffs, modes, record errors.

use std::{collections::HashMap, time::Duration};

use serde_json::json;

use crate::support::{
    Install, Scene, TestDb, USERS_FIELDS, assert_error, checksum, model_and_sync, organization, pg_connection,
    run_sync, users_table,
};

const TIMEOUT: Duration = Duration::from_secs(120);

/// `id → xmin` of every destination row: a row whose xmin changed was rewritten.
async fn row_versions(client: &tokio_postgres::Client) -> HashMap<i64, String> {
    let rows = client.query("select id, xmin::text from users", &[]).await.expect("versions");
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// Files below `dir` (the file payload store leaves empty directories behind).
fn files_under(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries.flatten().map(|e| if e.path().is_dir() { files_under(&e.path()) } else { 1 }).sum()
}

#[tokio::test]
async fn full_run_copies_the_model_and_a_rerun_sends_only_changes() {
    let install = Install::new().await;
    let process = install.spawn("api,worker,scheduler").await;
    let (_, api) = organization(&install, &process, "copy").await;
    let (source_db, target_db) = (TestDb::new().await, TestDb::new().await);
    let (source, target) = (source_db.client().await, target_db.client().await);
    users_table(&source, &target, 20_000).await;
    let src = pg_connection(&api, "src", &source_db.name).await;
    let dst = pg_connection(&api, "dst", &target_db.name).await;
    let (_, sync_id) =
        model_and_sync(&api, &src, &dst, "select * from users", "public.users", USERS_FIELDS, "updateOrCreate").await;

    let first = run_sync(&api, &sync_id, TIMEOUT).await;
    assert_eq!(first["status"], "completed", "{first}");
    assert_eq!(first["counts"]["insert"], 20_000);
    assert_eq!(first["counts"]["update"], 0);
    assert_eq!(first["counts"]["total"], 20_000);
    let estimate = first["progress"]["records_estimated"].as_i64().expect("the source estimates the model's size");
    assert!((18_000..=22_000).contains(&estimate), "planner estimate {estimate} for 20000 rows");
    assert_eq!(checksum(&target).await, checksum(&source).await, "destination equals the model");

    let before = row_versions(&target).await;
    let changed = source
        .execute("update users set score = score + 1, company = 'Changed' where id % 100 = 7", &[])
        .await
        .expect("change");
    assert_eq!(changed, 200);
    let second = run_sync(&api, &sync_id, TIMEOUT).await;
    assert_eq!(second["status"], "completed", "{second}");
    assert_eq!(
        (second["counts"]["update"].as_i64(), second["counts"]["insert"].as_i64()),
        (Some(200), Some(0)),
        "{second}"
    );
    assert_eq!(second["progress"]["records_read"], 20_000);
    assert_eq!(checksum(&target).await, checksum(&source).await);
    let after = row_versions(&target).await;
    let rewritten: Vec<i64> = after.iter().filter(|(id, v)| before.get(id) != Some(v)).map(|(id, _)| *id).collect();
    assert_eq!(rewritten.len(), 200, "exactly the changed rows were written");
    assert!(rewritten.iter().all(|id| id % 100 == 7));

    let third = run_sync(&api, &sync_id, TIMEOUT).await;
    assert_eq!(third["counts"]["total"], 0, "nothing changed, nothing sent: {third}");
    let resync = api.ok("POST", &format!("/api/syncs/{sync_id}/executions"), Some(json!({"resync": true}))).await;
    let resync = crate::support::wait_for_end(&api, &sync_id, resync["id"].as_str().expect("id"), TIMEOUT).await;
    assert_eq!(resync["counts"]["insert"], 20_000, "resync ignores the diff state: {resync}");

    // Old payloads are removed right after the execution is committed; give the worker a moment.
    let snapshots = install.payloads.join(format!("syncs/{sync_id}/snapshots"));
    let kept = || {
        let dirs = std::fs::read_dir(&snapshots).expect("snapshots");
        dirs.flatten().filter(|dir| files_under(&dir.path()) > 0).count()
    };
    let chunks = || files_under(&install.payloads.join("executions"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while (kept() != 1 || chunks() != 0) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(kept(), 1, "only the last committed snapshot is kept");
    assert_eq!(chunks(), 0, "change chunks are removed once loaded");

    let history = api.send("GET", &format!("/api/syncs/{sync_id}/executions"), None).await.1;
    assert_eq!(history["data"].as_array().map(Vec::len), Some(4));
    let status = api.ok("GET", &format!("/api/syncs/{sync_id}/status"), None).await;
    assert_eq!(status["last_execution"]["id"], resync["id"]);
    drop(process);
    for db in [source_db, target_db] {
        db.drop_now().await;
    }
    install.finish().await;
}

#[tokio::test]
async fn modes_and_record_errors() {
    let scene = Scene::new(
        "api,worker",
        "modes",
        "create table people (id int primary key, email text, name text);
         insert into people select g, case when g in (3, 7) then null else 'p' || g || '@x.io' end, 'P' || g from generate_series(1, 10) g;
         create table strict (id bigint primary key, email text not null, name text);
         create table mirror (id bigint primary key, email text, name text);
         create table updated_only (id bigint primary key, email text, name text);
         insert into updated_only values (1, 'old', 'old'), (2, 'old', 'old'), (99, 'keep', 'keep');
         create table log (id bigint, email text, name text);
         create table created (id bigint primary key, email text, name text);
         insert into created values (1, 'kept@x.io', 'Kept');",
    )
    .await;
    let (api, conn, db) = (scene.api.clone(), scene.conn.clone(), scene.data.client().await);
    let query = "select id, email, name from people";

    let (_, strict) =
        model_and_sync(&api, &conn, &conn, query, "public.strict", &["email", "name"], "updateOrCreate").await;
    let run = run_sync(&api, &strict, Duration::from_secs(60)).await;
    assert_eq!(run["status"], "completed_with_errors", "{run}");
    assert_eq!((run["counts"]["insert"].as_i64(), run["counts"]["error"].as_i64()), (Some(8), Some(2)), "{run}");
    let errors: Vec<String> =
        run["errors"].as_array().expect("errors").iter().map(|e| e.as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].starts_with("id=3: null value in column \"email\""), "names identity and column: {errors:?}");
    // The rejected records are retried next time even though the model did not change.
    db.batch_execute("alter table strict alter column email drop not null").await.expect("relax");
    let retry = run_sync(&api, &strict, Duration::from_secs(60)).await;
    assert_eq!((retry["status"].as_str(), retry["counts"]["insert"].as_i64()), (Some("completed"), Some(2)), "{retry}");

    let (_, update) =
        model_and_sync(&api, &conn, &conn, query, "public.updated_only", &["email", "name"], "update").await;
    let run = run_sync(&api, &update, Duration::from_secs(60)).await;
    assert_eq!(run["status"], "completed", "{run}");
    let rows: i64 = db.query_one("select count(*) from updated_only", &[]).await.expect("count").get(0);
    assert_eq!(rows, 3, "update mode never creates records");
    let name: String = db.query_one("select name from updated_only where id = 2", &[]).await.expect("row").get(0);
    assert_eq!(name, "P2");

    let (_, create) = model_and_sync(&api, &conn, &conn, query, "public.created", &["email", "name"], "create").await;
    run_sync(&api, &create, Duration::from_secs(60)).await;
    db.execute("update people set name = 'renamed' where id = 2", &[]).await.expect("change");
    let run = run_sync(&api, &create, Duration::from_secs(60)).await;
    assert_eq!(run["counts"]["total"], 0, "create mode never sends updates: {run}");
    let rows: Vec<(i64, String)> = db
        .query("select id, name from created where id <= 2 order by id", &[])
        .await
        .expect("rows")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows, vec![(1, "Kept".to_owned()), (2, "P2".to_owned())], "existing records are left alone");
    let total: i64 = db.query_one("select count(*) from created", &[]).await.expect("count").get(0);
    assert_eq!(total, 10);

    let (_, replace) = model_and_sync(&api, &conn, &conn, query, "public.mirror", &["email", "name"], "replace").await;
    run_sync(&api, &replace, Duration::from_secs(60)).await;
    db.execute("delete from people where id > 8", &[]).await.expect("delete");
    let run = run_sync(&api, &replace, Duration::from_secs(60)).await;
    assert_eq!(run["counts"]["delete"], 2, "replace removes records gone from the model: {run}");
    let ids: Vec<i64> =
        db.query("select id from mirror order by id", &[]).await.expect("ids").iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, (1..=8).collect::<Vec<i64>>());

    let (_, append) = model_and_sync(&api, &conn, &conn, query, "public.log", &["email", "name"], "append").await;
    run_sync(&api, &append, Duration::from_secs(60)).await;
    db.execute("update people set name = 'again' where id = 1", &[]).await.expect("change");
    let run = run_sync(&api, &append, Duration::from_secs(60)).await;
    assert_eq!(run["counts"]["insert"], 1, "append adds the changed record as a new row: {run}");
    let rows: i64 = db.query_one("select count(*) from log", &[]).await.expect("count").get(0);
    assert_eq!(rows, 9);

    let bad = api.ok("POST", "/api/models", Some(json!({"name": "dup", "connection_id": conn, "configuration": {"query": "select id % 3 as id, email, name from people"}}))).await;
    let bad_id = bad["id"].as_str().expect("id");
    let sync = api
        .ok(
            "POST",
            "/api/syncs",
            Some(json!({
                "name": "dups", "mode": "updateOrCreate", "schedule": {"frequency": "manual"},
                "target": {"connection_id": conn, "object": "public.mirror"},
                "identity": {"source": {"model_id": bad_id, "field": "id"}, "target": "id", "function": "Equality"},
                "fields": [{"source": {"model_id": bad_id, "field": "name"}, "target": "name"}],
            })),
        )
        .await;
    let run = run_sync(&api, sync["id"].as_str().expect("id"), Duration::from_secs(60)).await;
    assert_eq!(
        (run["counts"]["upserts"].as_i64(), run["counts"]["error"].as_i64()),
        (Some(3), Some(5)),
        "duplicate identities are record errors: {run}"
    );
    scene.finish().await;
}

/// A destination that cannot create target objects says so, and a sync asking it to create one
/// is refused naming `target.create`.
#[tokio::test]
async fn a_destination_that_cannot_create_targets_refuses_target_create() {
    let mut install = Install::new().await;
    install.extra_env = vec![("REFERENCE_CONNECTORS".into(), "true".into())];
    let process = install.spawn("api").await;
    let (_, api) = organization(&install, &process, "nocreate").await;
    let mut ids = Vec::new();
    for dataset in ["orders", "sink"] {
        let body = json!({"name": dataset, "type": "memory", "configuration": {"dataset": dataset, "rows": 10}});
        ids.push(api.ok("POST", "/api/connections", Some(body)).await["id"].as_str().expect("id").to_owned());
    }
    let (source, target) = (&ids[0], &ids[1]);
    let objects = format!("/api/connections/{target}/modelsync/targetobjects");
    let (status, listed) = api.send("GET", &format!("{objects}?include_target_creation_values=true"), None).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["target_creation"], json!({"supported": false, "properties": []}));
    let (status, answer) = api.send("GET", &format!("{objects}/properties/table"), None).await;
    assert_error(status, &answer, 404, "target-creation property not found");

    let model = json!({"name": "orders", "connection_id": source, "configuration": {"dataset": "orders"}});
    let model_id = api.ok("POST", "/api/models", Some(model)).await["id"].as_str().expect("model id").to_owned();
    let body = json!({
        "name": "s", "mode": "append", "schedule": {"frequency": "manual"},
        "target": {"connection_id": target, "create": {"table": "orders"}},
        "fields": [{"source": {"model_id": model_id, "field": "id"}, "target": "id"}],
    });
    let (status, answer) = api.send("POST", "/api/syncs", Some(body)).await;
    assert_error(status, &answer, 422, "a memory target cannot be created");
    assert_eq!(answer["metadata"]["field"], "target.create");
    drop(process);
    install.finish().await;
}
