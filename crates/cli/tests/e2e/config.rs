//! A bad or missing variable stops the process at start with one clear line.

use std::process::Command;

use crate::support::Install;

fn serve_with(env: Vec<(String, String)>) -> (bool, String) {
    let output =
        Command::new(env!("CARGO_BIN_EXE_syncline")).arg("serve").env_clear().envs(env).output().expect("run syncline");
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test]
async fn missing_or_malformed_variables_stop_the_process_with_one_line() {
    let install = Install::new().await;
    let without = |var: &str| install.env(5100).into_iter().filter(|(k, _)| k != var).collect::<Vec<_>>();
    let (ok, stderr) = serve_with(without("DEPLOYMENT_KEY"));
    assert!(!ok, "serve must fail without DEPLOYMENT_KEY");
    assert_eq!(stderr.trim(), "error: configuration error: DEPLOYMENT_KEY is required (the deployment key)");

    let mut env = without("PORT");
    env.push(("PORT".into(), "http".into()));
    let (ok, stderr) = serve_with(env);
    assert!(!ok);
    assert_eq!(stderr.lines().count(), 1, "one line, no backtrace: {stderr}");
    assert!(stderr.contains("PORT must be a whole number"), "{stderr}");

    let mut env = without("ROLE");
    env.push(("ROLE".into(), "api,cook".into()));
    let (ok, stderr) = serve_with(env);
    assert!(!ok);
    assert!(
        stderr.trim().ends_with("ROLE has unknown role \"cook\" (expected a comma list of api, worker, scheduler)"),
        "{stderr}"
    );
    install.finish().await;
}
