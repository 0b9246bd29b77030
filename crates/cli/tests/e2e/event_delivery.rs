//! Event routes: each source's events delivered once to its own warehouse tables, in Polku's
//! layout and in Segment's, new properties as new columns, duplicates counted; a poison event
//! in dead letters with its reason while the rest of its batch is delivered; routes that cannot
//! be delivered refused.

use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use crate::{
    ingest::{Key, post, source},
    support::{Scene, assert_error},
};

/// Adds a route to `source` and returns it.
pub async fn route(scene: &Scene, source: &str, body: Json) -> Json {
    scene.api.ok("POST", &format!("/api/event_sources/{source}/routes"), Some(body)).await
}

/// Waits until `route` of `source` has dealt with `events` events (delivered, dropped as
/// duplicates or dead-lettered) and returns it.
pub async fn settled(scene: &Scene, source: &str, route: &Json, events: i64) -> Json {
    let path = format!("/api/event_sources/{source}/routes/{}", route["id"].as_str().expect("route id"));
    let started = Instant::now();
    loop {
        let route = scene.api.ok("GET", &path, None).await;
        let counts = &route["counts"];
        let done: i64 = ["delivered", "deduplicated", "filtered", "dead_lettered"]
            .iter()
            .map(|k| counts[k].as_i64().unwrap_or(0))
            .sum();
        if done >= events {
            return route;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "route still at {counts} of {events} events");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn send(scene: &Scene, key: &str, batch: Json) {
    let (status, answer) = post(scene, "batch", Key::Basic(key), json!({"batch": batch}), false).await;
    assert_eq!(status, 200, "{answer}");
}

/// The rows of `sql` on the warehouse, as JSON objects.
pub async fn rows(scene: &Scene, sql: &str) -> Vec<Json> {
    let warehouse = scene.data.client().await;
    let sql = format!("select coalesce(json_agg(t), '[]') from ({sql}) t");
    let rows: Json = warehouse.query_one(&sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e:?}")).get(0);
    rows.as_array().expect("rows").clone()
}

#[tokio::test]
async fn each_source_is_delivered_once_to_its_own_tables_in_either_layout() {
    let scene = Scene::new("api,worker,scheduler", "deliver", "select 1").await;
    let (server, server_key) = source(&scene, "server").await;
    let (client, client_key) = source(&scene, "client").await;
    let polku = json!({"connection_id": scene.conn, "schema": "polku", "enrichment": ["name"]});
    let polku_server = route(&scene, &server, polku.clone()).await;
    let polku_client = route(&scene, &client, polku).await;
    let segment = route(&scene, &server, json!({"connection_id": scene.conn, "layout": "segment"})).await;
    assert_eq!((polku_server["layout"].as_str(), segment["schema"].as_str()), (Some("source_table"), Some("server")));
    let signups = json!({"connection_id": scene.conn, "schema": "signups", "filters": {"types": ["track"], "events": ["Signed Up"]}});
    let signups = route(&scene, &server, signups).await;

    let signed_up = json!({"type": "track", "messageId": "m1", "userId": "u1", "event": "Signed Up",
                           "properties": {"plan": "pro", "seats": 3, "address": {"city": "Oslo"}}});
    send(&scene, &server_key, json!([
        signed_up,
        {"type": "identify", "messageId": "m2", "userId": "u1", "traits": {"name": "Ada", "email": "ada@example.com"}},
        {"type": "page", "messageId": "m3", "anonymousId": "a1", "name": "Home", "properties": {"path": "/"}},
        {"type": "group", "messageId": "m4", "userId": "u1", "groupId": "g1", "traits": {"employees": 10}},
    ]))
    .await;
    send(
        &scene,
        &client_key,
        json!([{"type": "track", "messageId": "c1", "userId": "u2", "event": "Booked",
                                       "properties": {"nights": 2}}]),
    )
    .await;
    let coupon = json!({"type": "track", "messageId": "m5", "userId": "u1", "event": "Signed Up",
                        "properties": {"plan": "free", "coupon": "WINTER"}});
    send(&scene, &server_key, json!([signed_up, coupon])).await;

    for (source, route) in [(&server, &polku_server), (&server, &segment)] {
        let counts = &settled(&scene, source, route, 6).await["counts"];
        assert_eq!(
            counts,
            &json!({"delivered": 5, "deduplicated": 1, "filtered": 0, "dead_lettered": 0}),
            "the resent m1 is counted"
        );
    }
    assert_eq!(settled(&scene, &client, &polku_client, 1).await["counts"]["delivered"], 1);
    let counts = &settled(&scene, &server, &signups, 6).await["counts"];
    assert_eq!(counts, &json!({"delivered": 2, "deduplicated": 1, "filtered": 3, "dead_lettered": 0}), "only signups");
    assert_eq!(
        rows(&scene, "select id from signups.server order by id").await,
        [json!({"id": "m1"}), json!({"id": "m5"})]
    );
    let activity = scene.api.ok("GET", &format!("/api/event_sources/{server}/activity?sample=5"), None).await;
    assert_eq!(activity["accepted"], 6, "every event answered 200 is counted, the resent one too: {activity}");
    let sample: Vec<&str> =
        activity["sample"].as_array().expect("sample").iter().filter_map(|e| e["message_id"].as_str()).collect();
    assert_eq!(sample, ["m5", "m1", "m4", "m3", "m2"], "the newest first, as many as asked");
    assert_eq!(activity["sample"][0]["message"]["properties"]["coupon"], "WINTER");
    let routes = activity["routes"].as_array().expect("routes");
    assert_eq!(routes.len(), 3);
    assert!(routes.iter().all(|r| r["pending"] == false && r["lag_seconds"] == 0.0), "all delivered: {routes:?}");
    send(
        &scene,
        &client_key,
        json!([
            {"type": "identify", "messageId": "c2", "userId": "u2", "traits": {"name": "Bob"}},
            {"type": "track", "messageId": "c3", "userId": "u2", "event": "Booked"},
        ]),
    )
    .await;
    assert_eq!(settled(&scene, &client, &polku_client, 3).await["counts"]["delivered"], 3);

    let polku = rows(
        &scene,
        "select id, type, event, event_text, user_id, properties_plan, properties_seats,
                             properties_address_city, properties_coupon, traits_name, name, user_name
                             from polku.server order by id",
    )
    .await;
    let ids: Vec<&str> = polku.iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(ids, ["m1", "m2", "m3", "m4", "m5"], "one table per source, each event once");
    assert_eq!(polku[0]["properties_seats"], 3);
    assert_eq!(polku[0]["properties_address_city"], "Oslo");
    assert_eq!((polku[0]["event"].as_str(), polku[0]["event_text"].as_str()), (Some("signed_up"), Some("Signed Up")));
    assert_eq!(polku[1]["traits_name"], "Ada");
    assert_eq!(polku[2]["name"], "Home");
    assert_eq!(polku[4]["properties_coupon"], "WINTER", "a new property is a new column");
    assert!(polku[0]["properties_coupon"].is_null());
    let names: Vec<&str> = polku.iter().filter_map(|r| r["user_name"].as_str()).collect();
    assert_eq!(names, ["Ada", "Ada", "", "Ada", "Ada"], "named from the identify, the anonymous page left empty");
    let client_rows =
        rows(&scene, "select id, user_id, properties_nights, user_name from polku.client order by id").await;
    assert_eq!(
        client_rows[0],
        json!({"id": "c1", "user_id": "u2", "properties_nights": 2, "user_name": ""}),
        "the other source's own table; not held back before u2 was named"
    );
    assert_eq!(client_rows[2]["user_name"], "Bob");
    let state = scene.install.db.client().await;
    let named = state
        .query("select subject, payload->>'name' from event_log where kind = 'user.first_named' order by subject", &[])
        .await
        .expect("log events");
    let named: Vec<(String, String)> = named.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(named, [("u1".into(), "Ada".into()), ("u2".into(), "Bob".into())], "once each, through two routes");

    let tracks = rows(&scene, "select id, event from server.tracks order by id").await;
    assert_eq!(tracks, [json!({"id": "m1", "event": "signed_up"}), json!({"id": "m5", "event": "signed_up"})]);
    let events = rows(&scene, "select id, plan, seats, address_city, coupon from server.signed_up order by id").await;
    assert_eq!(events[0], json!({"id": "m1", "plan": "pro", "seats": 3, "address_city": "Oslo", "coupon": null}));
    assert_eq!(events[1]["coupon"], "WINTER");
    let users = rows(&scene, "select id, name, email from server.users").await;
    assert_eq!(users, [json!({"id": "u1", "name": "Ada", "email": "ada@example.com"})]);
    assert_eq!(rows(&scene, "select name, path from server.pages").await, [json!({"name": "Home", "path": "/"})]);
    assert_eq!(
        rows(&scene, "select group_id, employees from server.groups").await,
        [json!({"group_id": "g1", "employees": 10})]
    );
    let types = rows(&scene, "select data_type from information_schema.columns
                              where table_schema = 'server' and table_name = 'tracks' and column_name in ('received_at', 'uuid_ts')")
    .await;
    assert_eq!(types, vec![json!({"data_type": "timestamp with time zone"}); 2]);
    scene.finish().await;
}

#[tokio::test]
async fn a_poison_event_goes_to_dead_letters_and_is_delivered_by_a_replay_once_fixed() {
    let scene = Scene::new("api,worker,scheduler", "poison", "select 1").await;
    let (server, key) = source(&scene, "server").await;
    let segment = route(&scene, &server, json!({"connection_id": scene.conn, "layout": "segment"})).await;
    let paid = |id: &str, amount: Json| {
        json!({"type": "track", "messageId": id, "userId": "u", "event": "Paid",
                                              "properties": {"amount": amount}})
    };
    send(&scene, &key, json!([paid("m1", json!(42))])).await;
    settled(&scene, &server, &segment, 1).await;
    let batch = [paid("m2", json!(7)), paid("m3", json!("forty-two")), paid("m4", json!(8)), paid("m5", json!(9))];
    send(&scene, &key, json!(batch)).await;
    let counts = &settled(&scene, &server, &segment, 5).await["counts"];
    assert_eq!(counts, &json!({"delivered": 4, "deduplicated": 0, "filtered": 0, "dead_lettered": 1}));
    let delivered = rows(&scene, "select id from server.paid order by id").await;
    assert_eq!(delivered, [json!({"id": "m1"}), json!({"id": "m2"}), json!({"id": "m4"}), json!({"id": "m5"})]);
    let route_path = format!("/api/event_sources/{server}/routes/{}", segment["id"].as_str().expect("id"));
    let letters = scene.api.ok("GET", &format!("{route_path}/dead_letters"), None).await;
    let [letter] = letters.as_array().expect("dead letters").as_slice() else { panic!("one dead letter: {letters}") };
    assert_eq!(letter["message_id"], "m3");
    assert_eq!(letter["message"]["properties"]["amount"], "forty-two", "the event as it arrived");
    let reason = letter["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("numeric") && reason.contains("forty-two"), "the warehouse's reason: {reason}");
    assert!(letter["attempts"].as_i64() >= Some(1) && letter["replayed_at"].is_null(), "{letter}");

    scene
        .data
        .client()
        .await
        .batch_execute("alter table server.paid alter column amount type text")
        .await
        .expect("fix");
    let replay = json!({"ids": [letter["id"]]});
    let asked = scene.api.ok("POST", &format!("{route_path}/dead_letters/replay"), Some(replay.clone())).await;
    assert_eq!(asked["requested"], 1);
    let replayed = wait_for(|| async {
        let letters = scene.api.ok("GET", &format!("{route_path}/dead_letters"), None).await;
        letters[0]["replayed_at"].is_string().then_some(letters)
    })
    .await;
    assert_eq!(replayed[0]["attempts"], letter["attempts"], "delivered at the first replay");
    let amounts = rows(&scene, "select id, amount from server.paid order by id").await;
    assert_eq!(amounts[2], json!({"id": "m3", "amount": "forty-two"}), "{amounts:?}");
    assert_eq!(amounts.len(), 5);
    let asked = scene.api.ok("POST", &format!("{route_path}/dead_letters/replay"), Some(replay)).await;
    assert_eq!(asked["requested"], 0, "a delivered letter is not replayed again");

    // A replay of the route from before its first event delivers everything again: nothing new.
    let from = json!({"from": "2000-01-01T00:00:00Z"});
    scene.api.ok("POST", &format!("{route_path}/replay"), Some(from)).await;
    let counts = &settled(&scene, &server, &segment, 11).await["counts"];
    assert_eq!(
        counts,
        &json!({"delivered": 5, "deduplicated": 5, "filtered": 0, "dead_lettered": 1}),
        "m3 fails no more"
    );
    assert_eq!(rows(&scene, "select id from server.tracks").await.len(), 5, "no event twice");
    let (status, answer) =
        scene.api.send("POST", &format!("{route_path}/replay"), Some(json!({"from": "yesterday"}))).await;
    assert_error(status, &answer, 422, "from");
    let (status, answer) = scene
        .api
        .send(
            "POST",
            &format!("{route_path}/dead_letters/replay"),
            Some(json!({"ids": [1], "to": "2000-01-01T00:00:00Z"})),
        )
        .await;
    assert_error(status, &answer, 422, "ids");
    scene.finish().await;
}

#[tokio::test]
async fn a_route_adds_the_fields_of_a_models_row_for_the_events_user() {
    let ddl = "create table people (id text primary key, full_name text, plan text, seats int);
               insert into people values ('u1', 'Ada Lovelace', 'pro', 3), ('u2', 'Bob', null, 1)";
    let scene = Scene::new("api,worker,scheduler", "lookup", ddl).await;
    let (server, key) = source(&scene, "server").await;
    let body =
        json!({"name": "people", "connection_id": scene.conn, "configuration": {"query": "select * from people"}});
    let model = scene.api.ok("POST", "/api/models", Some(body)).await;
    let model_id = model["id"].as_str().expect("model id");
    let path = format!("/api/event_sources/{server}/routes");
    for (lookup, field) in [
        (json!({"model_id": model_id, "key": "nope", "fields": ["plan"]}), "lookup.key"),
        (json!({"model_id": model_id, "key": "id", "fields": ["plan", "missing"]}), "lookup.fields"),
        (json!({"model_id": model_id, "key": "id", "fields": []}), "lookup.fields"),
        (json!({"model_id": uuid::Uuid::new_v4(), "key": "id", "fields": ["plan"]}), "lookup.model_id"),
        (json!({"model": model_id}), "lookup"),
    ] {
        let body = json!({"connection_id": scene.conn, "lookup": lookup});
        let (status, answer) = scene.api.send("POST", &path, Some(body)).await;
        assert_error(status, &answer, 422, field);
        assert_eq!(answer["metadata"]["field"], field, "{answer}");
    }
    let lookup = json!({"model_id": model_id, "key": "id", "fields": ["full_name", "plan", "seats"]});
    let routed =
        route(&scene, &server, json!({"connection_id": scene.conn, "schema": "looked", "lookup": lookup})).await;
    assert_eq!(routed["lookup"]["fields"], json!(["full_name", "plan", "seats"]));
    let track = |id: &str, user: &str| json!({"type": "track", "event": "E", "userId": user, "messageId": id});
    send(&scene, &key, json!([track("m1", "u1"), track("m2", "u2"), track("m3", "u3")])).await;
    settled(&scene, &server, &routed, 3).await;
    let looked = rows(&scene, "select id, user_full_name, user_plan, user_seats from looked.server order by id").await;
    assert_eq!(
        looked,
        [
            json!({"id": "m1", "user_full_name": "Ada Lovelace", "user_plan": "pro", "user_seats": 3}),
            json!({"id": "m2", "user_full_name": "Bob", "user_plan": null, "user_seats": 1}),
            json!({"id": "m3", "user_full_name": null, "user_plan": null, "user_seats": null}),
        ],
        "the model's row for each user, typed as the model has it; null where it has none"
    );
    scene.finish().await;
}

/// Polls `check` every 100 ms until it gives a value, for at most a minute.
async fn wait_for<T, F: Future<Output = Option<T>>>(check: impl Fn() -> F) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "not within a minute");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The schedules that keep route `id`'s delivery running.
async fn schedules(state: &tokio_postgres::Client, id: &str) -> i64 {
    let sql = "select count(*) from schedules where kind = 'event_delivery' and subject_id = $1::text::uuid";
    state.query_one(sql, &[&id]).await.expect("schedules").get(0)
}

#[tokio::test]
async fn routes_refuse_what_they_cannot_deliver() {
    let scene = Scene::new("api", "routes", "select 1").await;
    let (server, _) = source(&scene, "Server Events").await;
    let (other, _) = source(&scene, "other").await;
    let path = format!("/api/event_sources/{server}/routes");
    for (body, field) in [
        (json!({"connection_id": scene.conn, "table": "t"}), "table"),
        (json!({"layout": "segment"}), "connection_id"),
        (json!({"connection_id": "not-an-id"}), "connection_id"),
        (json!({"connection_id": uuid::Uuid::new_v4()}), "connection_id"),
        (json!({"connection_id": scene.conn, "layout": "star"}), "layout"),
        (json!({"connection_id": scene.conn, "schema": "Not Snake"}), "schema"),
        (json!({"connection_id": scene.conn, "schema": 7}), "schema"),
        (json!({"connection_id": scene.conn, "filters": {"types": ["click"]}}), "filters"),
        (json!({"connection_id": scene.conn, "filters": {"where": {}}}), "filters"),
    ] {
        let (status, answer) = scene.api.send("POST", &path, Some(body.clone())).await;
        assert_error(status, &answer, 422, field);
        assert_eq!(answer["metadata"]["field"], field, "{body} → {answer}");
    }
    let created = route(&scene, &server, json!({"connection_id": scene.conn})).await;
    assert_eq!(created["schema"], "server_events", "the source's name in snake_case");
    let id = created["id"].as_str().expect("id");
    let state = scene.install.db.client().await;
    let scheduled = schedules(&state, id).await;
    assert_eq!(scheduled, 1, "the route's delivery is kept running");

    let changed = scene
        .api
        .ok(
            "PUT",
            &format!("{path}/{id}"),
            Some(json!({"connection_id": scene.conn, "layout": "segment", "schema": "events"})),
        )
        .await;
    assert_eq!((changed["layout"].as_str(), changed["schema"].as_str()), (Some("segment"), Some("events")));
    let (status, answer) = scene.api.send("GET", &format!("/api/event_sources/{other}/routes/{id}"), None).await;
    assert_error(status, &answer, 404, "event route");
    let listed = scene.api.ok("GET", &path, None).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    let (status, _) = scene.api.send("DELETE", &format!("{path}/{id}"), None).await;
    assert_eq!(status, 204);
    let (status, answer) = scene.api.send("GET", &format!("{path}/{id}"), None).await;
    assert_error(status, &answer, 404, "event route");
    let scheduled = schedules(&state, id).await;
    assert_eq!(scheduled, 0, "a deleted route is not restarted");
    scene.finish().await;
}
