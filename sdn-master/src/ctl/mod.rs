//! `sdnctl`, the admin CLI: talks to a master's admin API and prints tables
//! (or JSON with `-o json`). API errors become one line and a non-zero exit.

mod client;
mod output;
mod services;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub use self::client::{Client, CtlError};
pub use self::output::ServiceDetail;
pub use self::services::{EndpointsCommand, ServiceRef, ServicesCommand};
use crate::api::types::{NodeAccessRequest, NodeAccessView, RegisterNode};

#[derive(Debug, Parser)]
#[command(name = "sdnctl", version, about = "Administer an sdn cluster through a master's admin API")]
pub struct Cli {
    /// URL of a master's admin API.
    #[arg(long, env = "SDN_SERVER", default_value = "http://127.0.0.1:8440", global = true)]
    pub server: String,
    /// Bearer token (prefer --token-file: a flag shows in the process list).
    /// Without either flag: $SDN_TOKEN, then the file named by $SDN_TOKEN_FILE.
    #[arg(long, global = true)]
    pub token: Option<String>,
    /// File holding the bearer token.
    #[arg(long, global = true)]
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
    /// Pods attached on the nodes, as their agents record them.
    #[command(subcommand)]
    Pods(PodsCommand),
    /// The cluster network configuration.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Services: a name and (unless headless) a cluster IP for a set of endpoints.
    #[command(subcommand)]
    Services(ServicesCommand),
    /// The addresses behind each service.
    #[command(subcommand)]
    Endpoints(EndpointsCommand),
}

#[derive(Debug, Subcommand)]
pub enum PodsCommand {
    /// List every pod with its node and IP.
    List {
        /// Only the pods of this node.
        #[arg(long)]
        node: Option<String>,
    },
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
    /// Give a node its etcd user and role: it may then connect with a client certificate whose
    /// common name is its name, read what agents read and write only its own keys. The master
    /// must be etcd's root.
    Authorize {
        name: String,
        /// The node's underlay address, whose claim it may write.
        #[arg(long)]
        ip: std::net::IpAddr,
    },
    /// Delete a node's etcd user and role.
    Revoke { name: String },
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

fn read_token_file(path: PathBuf) -> Result<String, CtlError> {
    match std::fs::read_to_string(&path) {
        Ok(token) => Ok(token.trim().to_owned()),
        Err(source) => Err(CtlError::TokenFile { path, source }),
    }
}

/// The token: flags first, then the environment, so an explicit
/// `--token-file` wins over an exported `SDN_TOKEN`.
fn token(cli_token: Option<String>, cli_file: Option<PathBuf>) -> Result<String, CtlError> {
    if let Some(token) = cli_token {
        return Ok(token);
    }
    if let Some(path) = cli_file {
        return read_token_file(path);
    }
    if let Some(token) = std::env::var_os("SDN_TOKEN") {
        return Ok(token.to_string_lossy().trim().to_owned());
    }
    match std::env::var_os("SDN_TOKEN_FILE") {
        Some(path) => read_token_file(path.into()),
        None => Err(CtlError::NoToken),
    }
}

/// Node names go into URL paths: refuse what is not a DNS-1123 label here,
/// with the same message the API gives.
fn node_name(name: String) -> Result<String, CtlError> {
    sdn_cluster::records::validate_label("name", &name).map_err(|e| CtlError::Invalid(e.to_string()))?;
    Ok(name)
}

/// Runs one command; returns what to print on stdout.
pub async fn run(cli: Cli) -> Result<String, CtlError> {
    let token = token(cli.token, cli.token_file)?;
    let client = Client::new(&cli.server, token, cli.ca_file.as_deref())?;
    let json = cli.output == Output::Json;
    Ok(match cli.command {
        Command::Nodes(NodesCommand::List) => output::nodes(&client.get::<Vec<_>>("/api/v1/nodes").await?, json),
        Command::Nodes(NodesCommand::Get { name }) => {
            output::node(&client.get(&format!("/api/v1/nodes/{}", node_name(name)?)).await?, json)
        }
        Command::Nodes(NodesCommand::Add { name, ip }) => {
            output::node(&client.post("/api/v1/nodes", &RegisterNode { name, ip }).await?, json)
        }
        Command::Nodes(NodesCommand::Delete { name }) => {
            let name = node_name(name)?;
            client.delete(&format!("/api/v1/nodes/{name}")).await?;
            if json { String::new() } else { format!("node {name} deleted\n") }
        }
        Command::Nodes(NodesCommand::Authorize { name, ip }) => {
            let name = node_name(name)?;
            let view: NodeAccessView =
                client.put(&format!("/api/v1/nodes/{name}/access"), &NodeAccessRequest { ip }).await?;
            if json {
                serde_json::to_string_pretty(&view).unwrap_or_default() + "\n"
            } else {
                format!("node {name}: etcd user {}, role {}, writes {}\n", view.user, view.role, view.writes.join(" "))
            }
        }
        Command::Nodes(NodesCommand::Revoke { name }) => {
            let name = node_name(name)?;
            client.delete(&format!("/api/v1/nodes/{name}/access")).await?;
            if json { String::new() } else { format!("node {name}: etcd user and role deleted\n") }
        }
        Command::Subnets(SubnetsCommand::List) => {
            output::subnets(&client.get::<Vec<_>>("/api/v1/subnets").await?, json)
        }
        Command::Pods(PodsCommand::List { node }) => {
            let path = match node {
                Some(node) => format!("/api/v1/pods?node={}", node_name(node)?),
                None => "/api/v1/pods".to_owned(),
            };
            output::pods(&client.get::<Vec<_>>(&path).await?, json)
        }
        Command::Network(NetworkCommand::Show) => output::network(&client.get("/api/v1/network").await?, json),
        Command::Services(command) => services::services(&client, command, json).await?,
        Command::Endpoints(command) => services::endpoints(&client, command, json).await?,
    })
}
