//! `syncline`: runs the roles (api, worker, scheduler) and administers an installation.

mod api_client;
mod bulk;
mod demo;
mod provision;
mod secrets;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "syncline",
    version,
    about = "Self-hosted data integration: model syncs, bulk syncs and event streams"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run one or more roles in this process (default: all of api, worker and scheduler).
    Serve {
        /// Comma-separated roles: api (alias web), worker (alias sync), scheduler.
        #[arg(long, env = "ROLE", value_delimiter = ',')]
        role: Option<Vec<String>>,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage organizations (workspaces).
    Workspaces {
        #[command(subcommand)]
        command: provision::WorkspacesCommand,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: provision::KeysCommand,
    },
    /// Manage secrets at rest.
    Secrets {
        #[command(subcommand)]
        command: secrets::SecretsCommand,
    },
    /// Run the end-to-end demo against a running API: sample data, connections, a model, a sync.
    Demo(demo::DemoArgs),
    /// Start bulk syncs and follow their executions through a running API.
    Bulk {
        #[command(subcommand)]
        command: bulk::BulkCommand,
    },
}

/// Sends large allocations (record batches) straight to `mmap`, so freed batches go back to the
/// OS. glibc otherwise raises its threshold after the first large free and keeps freed batches
/// on its heaps, which about doubles a worker's resident memory.
fn return_large_buffers_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes a tuning parameter of glibc's allocator.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    return_large_buffers_to_the_os();
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve { role: None }) {
        Command::Serve { role } => serve::run(role).await,
        Command::Migrate => provision::migrate().await,
        Command::Workspaces { command } => provision::workspaces(command).await,
        Command::Keys { command } => provision::keys(command).await,
        Command::Secrets { command } => secrets::run(command).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Bulk { command } => bulk::run(command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
