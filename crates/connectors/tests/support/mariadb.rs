//! Where the tests find MariaDB: `MARIADB_URL` (default `mysql://root@127.0.0.1:3306/test`,
//! what `scripts/services.sh` makes sure of). Each test works in a database of its own there.

use mysql_async::{Opts, OptsBuilder};
use serde_json::{Value as Json, json};

fn opts() -> Opts {
    let url = std::env::var("MARIADB_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    Opts::from_url(&url).unwrap_or_else(|e| panic!("MARIADB_URL {url:?}: {e}"))
}

/// A connection to the server, in no database.
pub async fn admin() -> mysql_async::Conn {
    let opts = OptsBuilder::from_opts(opts()).db_name(None::<String>);
    mysql_async::Conn::new(opts).await.expect("the MariaDB of MARIADB_URL")
}

/// The `mysql` connector's configuration for `database` on the server.
pub fn config(database: &str) -> Json {
    let opts = opts();
    let mut config = json!({
        "hostname": opts.ip_or_hostname(), "port": opts.tcp_port(), "database": database,
        "username": opts.user().unwrap_or("root"), "ssl": false,
    });
    if let Some(password) = opts.pass() {
        config["password"] = json!(password);
    }
    config
}
