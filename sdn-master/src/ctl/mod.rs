//! `sdnctl`, the admin CLI: talks to a master's admin API and prints tables
//! (or JSON with `-o json`). API errors become one line and a non-zero exit.

mod client;
mod output;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub use self::client::{Client, CtlError};
use crate::api::types::RegisterNode;

#[derive(Debug, Parser)]
#[command(name = "sdnctl", version, about = "Administer an sdn cluster through a master's admin API")]
pub struct Cli {
    /// URL of a master's admin API.
    #[arg(long, env = "SDN_SERVER", default_value = "http://127.0.0.1:8440", global = true)]
    pub server: String,
    /// Bearer token (prefer --token-file: a flag shows in the process list).
    #[arg(long, env = "SDN_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// File holding the bearer token.
    #[arg(long, env = "SDN_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// CA certificate that signed the master's TLS certificate.
    #[arg(long, env = "SDN_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Registered nodes and their subnets.
    #[command(subcommand)]
    Nodes(NodesCommand),
    /// Allocated host subnets.
    #[command(subcommand)]
    Subnets(SubnetsCommand),
    /// The cluster network configuration.
    #[command(subcommand)]
    Network(NetworkCommand),
}

#[derive(Debug, Subcommand)]
pub enum NodesCommand {
    /// List every node.
    List,
    /// Show one node.
    Get { name: String },
    /// Register a node (or move a registered node to a new IP).
    Add {
        name: String,
        /// The node's underlay address.
        #[arg(long)]
        ip: std::net::IpAddr,
    },
    /// Delete a node; its subnet is released for reuse.
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
pub enum SubnetsCommand {
    /// List every allocated subnet.
    List,
}

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Show the cluster network.
    Show,
}

/// Runs one command; returns what to print on stdout.
pub async fn run(cli: Cli) -> Result<String, CtlError> {
    let token = match (cli.token, &cli.token_file) {
        (Some(token), _) => token,
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|source| CtlError::TokenFile { path: path.clone(), source })?
            .trim()
            .to_owned(),
        (None, None) => return Err(CtlError::NoToken),
    };
    let client = Client::new(&cli.server, token, cli.ca_file.as_deref())?;
    let json = cli.output == Output::Json;
    Ok(match cli.command {
        Command::Nodes(NodesCommand::List) => output::nodes(&client.get::<Vec<_>>("/api/v1/nodes").await?, json),
        Command::Nodes(NodesCommand::Get { name }) => {
            output::node(&client.get(&format!("/api/v1/nodes/{name}")).await?, json)
        }
        Command::Nodes(NodesCommand::Add { name, ip }) => {
            output::node(&client.post("/api/v1/nodes", &RegisterNode { name, ip }).await?, json)
        }
        Command::Nodes(NodesCommand::Delete { name }) => {
            client.delete(&format!("/api/v1/nodes/{name}")).await?;
            if json { String::new() } else { format!("node {name} deleted\n") }
        }
        Command::Subnets(SubnetsCommand::List) => {
            output::subnets(&client.get::<Vec<_>>("/api/v1/subnets").await?, json)
        }
        Command::Network(NetworkCommand::Show) => output::network(&client.get("/api/v1/network").await?, json),
    })
}
