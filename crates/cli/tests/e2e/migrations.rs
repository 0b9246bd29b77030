//! Several replicas starting at once migrate the database exactly once.

use syncline_core::db;

use crate::support::TestDb;

#[tokio::test]
async fn concurrent_migrators_apply_each_migration_once() {
    let test_db = TestDb::new().await;
    let runs = (0..4).map(|_| {
        let url = test_db.url.clone();
        tokio::spawn(async move {
            db::migrate(&db::pool(&url, 1, std::time::Duration::from_secs(30)).expect("pool")).await.expect("migrate")
        })
    });
    let mut applied = Vec::new();
    for run in runs {
        applied.push(run.await.expect("join"));
    }
    assert_eq!(applied.iter().filter(|a| !a.is_empty()).count(), 1, "exactly one migrator applies: {applied:?}");
    assert!(applied.iter().flatten().any(|m| m.contains("init")));
    let client = test_db.client().await;
    let tables: i64 = client
        .query_one(
            "select count(*) from information_schema.tables where table_name in ('model_syncs', 'executions')",
            &[],
        )
        .await
        .expect("query")
        .get(0);
    assert_eq!(tables, 2);
    test_db.drop_now().await;
}
