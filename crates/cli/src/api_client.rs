//! A small client of Syncline's API for the commands that drive a running installation.

use anyhow::{Context, bail};
use reqwest::{Client, Method};
use serde_json::Value as Json;

/// The API at `base`.
pub struct Api {
    http: Client,
    base: String,
}

impl Api {
    pub fn new(base: &str) -> Self {
        Self { http: Client::new(), base: base.trim_end_matches('/').to_owned() }
    }

    /// Calls `method /api/{path}` with `token`; returns the status and the JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Json>,
    ) -> anyhow::Result<(u16, Json)> {
        let mut request = self.http.request(method.clone(), format!("{}/api/{path}", self.base)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.with_context(|| format!("cannot reach the API at {}", self.base))?;
        let status = response.status().as_u16();
        let body = response.json::<Json>().await.unwrap_or(Json::Null);
        Ok((status, body))
    }

    /// [`Api::call`] that expects a 2xx answer; returns its `data`.
    pub async fn ok(&self, method: Method, path: &str, token: &str, body: Option<Json>) -> anyhow::Result<Json> {
        let (status, body) = self.call(method.clone(), path, token, body).await?;
        if !(200..300).contains(&status) {
            bail!("{method} /api/{path} answered {status}: {}", body["message"].as_str().unwrap_or("no message"));
        }
        Ok(body["data"].clone())
    }
}
