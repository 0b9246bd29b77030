//! Administration commands: migrations, workspace provisioning and API keys.

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;
use syncline_api::domain::{organizations, users};
use syncline_core::db;

#[derive(Subcommand)]
pub enum WorkspacesCommand {
    /// Create an organization and its users (idempotent: existing ones are kept).
    Provision {
        /// Organization name.
        #[arg(long)]
        name: String,
        /// Comma-separated user emails; they become admins.
        #[arg(long, value_delimiter = ',')]
        users: Vec<String>,
        /// Email domain the organization claims for sign-in.
        #[arg(long)]
        domain: Option<String>,
        /// Do not ask for confirmation (for scripts and Kubernetes Jobs).
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Mint an API key for a user; prints it once.
    Create {
        /// Organization name or id.
        #[arg(long)]
        organization: String,
        /// The user's email.
        #[arg(long)]
        user: String,
    },
}

async fn pool() -> anyhow::Result<db::DbPool> {
    let url = std::env::var("DATABASE_URL")
        .context("configuration error: DATABASE_URL is required (postgres://user:pass@host:5432/db)")?;
    migrated_pool(&url).await
}

/// A small pool on `url`, with pending migrations applied first.
pub async fn migrated_pool(url: &str) -> anyhow::Result<db::DbPool> {
    let pool = db::pool(url, 2, std::time::Duration::from_secs(30))?;
    db::migrate(&pool).await.context("cannot migrate the database (is DATABASE_URL reachable?)")?;
    Ok(pool)
}

pub async fn migrate() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL")
        .context("configuration error: DATABASE_URL is required (postgres://user:pass@host:5432/db)")?;
    let applied = db::migrate(&db::pool(&url, 1, std::time::Duration::from_secs(30))?).await?;
    match applied.len() {
        0 => println!("database is up to date"),
        n => println!("applied {n} migration(s): {}", applied.join(", ")),
    }
    Ok(())
}

pub async fn workspaces(command: WorkspacesCommand) -> anyhow::Result<()> {
    let WorkspacesCommand::Provision { name, users, domain, yes } = command;
    let users: Vec<String> = users.into_iter().map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()).collect();
    if users.iter().any(|u| !u.contains('@')) {
        anyhow::bail!("--users must be email addresses");
    }
    if !yes {
        eprintln!(
            "provisioning organization {name:?} with users {} (pass --yes to skip this notice)",
            users.join(", ")
        );
    }
    let pool = pool().await?;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let (organization_id, provisioned) = organizations::provision(&tx, &name, domain.as_deref(), &users)
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    tx.commit().await?;
    let users: Vec<_> = provisioned.iter().map(users::to_json).collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({"organization_id": organization_id, "name": name, "users": users}))?
    );
    Ok(())
}

pub async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    let KeysCommand::Create { organization, user } = command;
    let pool = pool().await?;
    let client = pool.get().await?;
    let (organization_id, user_id) = syncline_api::store::users::find_in_named(&client, &organization, &user)
        .await
        .map_err(|e| anyhow::anyhow!(e))?
        .with_context(|| format!("no user {user} in organization {organization}"))?;
    let (_, key) =
        users::mint_key(&client, organization_id, user_id, false).await.map_err(|e| anyhow::anyhow!(e.message))?;
    println!("{key}");
    Ok(())
}
