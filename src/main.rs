//! `aula`: the portal on one machine, and the operator's commands.
//!
//! `aula serve` runs everything in one process: with the embedded store (SQLite) by
//! default, or on DynamoDB/S3 at `AWS_ENDPOINT_URL` with `--store dynamodb`.

use anyhow::Result;
use aula::{config, portal};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "aula",
    version,
    about = "Aula: privacy-first video conferencing for schools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
// Parsed once at start; boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run the portal on this machine.
    Serve(config::ServeArgs),
    /// Print the HTTP API's OpenAPI document (JSON).
    Openapi,
    /// The operator's account commands (they take the same store settings as `serve`).
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)]
enum AdminCommand {
    /// Give an account a new random password (printed once, to be changed at the next
    /// login), unblock it and end its sessions: for an admin who lost theirs.
    ResetPassword {
        /// The account's email address.
        email: String,
        #[command(flatten)]
        store: config::ServeArgs,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    config::init_tracing();
    match cli.command {
        Command::Serve(args) => portal::run(args.into_config()?).await,
        Command::Admin(AdminCommand::ResetPassword { email, store }) => {
            portal::reset_password(store.into_config()?, &email).await
        }
        Command::Openapi => {
            println!("{}", serde_json::to_string_pretty(&aula_api::openapi())?);
            Ok(())
        }
    }
}
