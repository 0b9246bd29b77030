//! `syncline secrets rotate`: re-encrypts every secret at rest with the current encryption key.

use anyhow::anyhow;
use clap::Subcommand;
use syncline_core::Settings;

/// Every column holding values sealed with the settings' `SecretBox`, as (table, column): a
/// nullable `bytea` in a table keyed by a uuid `id`. Add each new sealed column here, or
/// rotation leaves its values under the old key.
const SEALED_COLUMNS: &[(&str, &str)] = &[("connections", "secrets"), ("organizations", "client_secret")];

#[derive(Subcommand)]
pub enum SecretsCommand {
    /// Re-encrypt every stored secret with the current encryption key.
    ///
    /// Each secret is opened with ENCRYPTION_KEY (else DEPLOYMENT_KEY) or one of
    /// PREVIOUS_ENCRYPTION_KEYS and sealed again with the current key, all in one transaction.
    /// Safe to repeat.
    Rotate,
}

/// Runs a `secrets` subcommand.
pub async fn run(command: SecretsCommand) -> anyhow::Result<()> {
    let SecretsCommand::Rotate = command;
    let settings = Settings::from_env()?;
    let secrets = settings.secret_box();
    let pool = crate::provision::migrated_pool(&settings.database_url).await?;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let mut count = 0;
    for (table, column) in SEALED_COLUMNS {
        let rows = tx
            .query(&format!("select id, {column} from {table} where {column} is not null order by id for update"), &[])
            .await?;
        let update = tx.prepare(&format!("update {table} set {column} = $2 where id = $1")).await?;
        for row in rows {
            let (id, sealed): (uuid::Uuid, Vec<u8>) = (row.get(0), row.get(1));
            let plaintext = secrets.open(&sealed).map_err(|_| {
                anyhow!(
                    "{table}.{column} of row {id} cannot be decrypted with the current key or any previous one; \
                     add the key it was sealed with to PREVIOUS_ENCRYPTION_KEYS (nothing was changed)"
                )
            })?;
            tx.execute(&update, &[&id, &secrets.seal(&plaintext)]).await?;
            count += 1;
        }
    }
    tx.commit().await?;
    println!("re-encrypted {count} secret{} with the current key", if count == 1 { "" } else { "s" });
    Ok(())
}
