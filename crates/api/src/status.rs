//! `GET /status.txt`: 200 when Postgres and Redis answer, 503 otherwise.

use actix_web::{HttpResponse, get, web};
use syncline_core::{db, queue};

use crate::AppState;

#[get("/status.txt")]
pub async fn status(state: web::Data<AppState>) -> HttpResponse {
    let (database, redis) = tokio::join!(db::ping(&state.pool), queue::ping(&state.redis));
    let body =
        format!("database: {}\nredis: {}\n", if database { "ok" } else { "down" }, if redis { "ok" } else { "down" });
    let mut response = if database && redis { HttpResponse::Ok() } else { HttpResponse::ServiceUnavailable() };
    response.content_type("text/plain; charset=utf-8").body(body)
}
