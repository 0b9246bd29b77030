//! A local S3 server for tests of this crate and others: `moto_server` from the repository's
//! Python environment (`scripts/python-env.sh`), on a free port of 127.0.0.1, stopped when
//! dropped.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A running `moto_server`.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:{port}`.
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Starts `moto_server` (`MOTO_SERVER`, else `.venv/bin/moto_server` of the repository), or
    /// returns `None` — the test skips — outside CI when it is absent.
    pub async fn start() -> Option<Self> {
        let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let binary =
            std::env::var("MOTO_SERVER").map(Into::into).unwrap_or_else(|_| workspace.join(".venv/bin/moto_server"));
        if !binary.exists() {
            assert!(std::env::var_os("CI").is_none(), "{} is missing: run scripts/python-env.sh", binary.display());
            eprintln!("skipping: {} is missing (run scripts/python-env.sh)", binary.display());
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let child = Command::new(binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let moto = Self { child, endpoint: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::get(format!("{}/", moto.endpoint)).await.is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(moto)
    }

    /// Creates bucket `bucket`.
    pub async fn create_bucket(&self, bucket: &str) {
        let response =
            reqwest::Client::new().put(format!("{}/{bucket}", self.endpoint)).send().await.expect("create bucket");
        assert!(response.status().is_success(), "create bucket: {}", response.status());
    }

    /// An `s3://` URL of `prefix` in `bucket` on this server (credentials go separately).
    pub fn url(&self, bucket: &str, prefix: &str) -> String {
        format!("s3://{bucket}/{prefix}?region=eu-west-1&endpoint={}&allow_http=true", self.endpoint)
    }

    /// The keys in `bucket`, as the server lists them (XML).
    pub async fn listing(&self, bucket: &str) -> String {
        self.get(&format!("{bucket}?list-type=2")).await
    }

    /// The multipart uploads in progress in `bucket`, as the server lists them (XML).
    pub async fn uploads(&self, bucket: &str) -> String {
        self.get(&format!("{bucket}?uploads")).await
    }

    async fn get(&self, query: &str) -> String {
        let response = reqwest::get(format!("{}/{query}", self.endpoint)).await.expect("list");
        response.text().await.expect("listing")
    }
}
