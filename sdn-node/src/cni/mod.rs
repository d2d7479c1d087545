//! The CNI plugin `sdn-cni` (specification 1.1.0; it also speaks 0.3.0 to
//! 1.0.0). It checks what the runtime gives it, the `CNI_*` environment and
//! the network configuration, and leaves the work to the sdn-node agent
//! through the pod API: the agent makes the veth, the address and the flows.
//! This is the core; `src/bin/sdn-cni.rs` only reads the process's
//! environment and stdin and prints the [`Outcome`].
//!
//! - [`spec`]: versions, commands, error codes, the environment, the network configuration.
//! - [`result`]: what sdn-cni prints, per version; the CHECK of a `prevResult`.

pub mod result;
pub mod spec;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;

use crate::podapi::client::{ClientError, PodClient};
use crate::podapi::{AttachRequest, Attachment, Detached, ErrorKind, GcRequest, GcResponse, Status};
use spec::{CniError, Command, Container, NetConf};

/// The pod API as sdn-cni uses it; [`PodClient`] in the plugin, a fake in tests.
pub trait PodApi {
    fn attach(&self, request: &AttachRequest) -> impl Future<Output = Result<Attachment, ClientError>> + Send;
    fn detach(&self, id: &str, ifname: &str) -> impl Future<Output = Result<Detached, ClientError>> + Send;
    fn check(&self, id: &str, ifname: &str) -> impl Future<Output = Result<Attachment, ClientError>> + Send;
    fn gc(&self, request: &GcRequest) -> impl Future<Output = Result<GcResponse, ClientError>> + Send;
    fn status(&self) -> impl Future<Output = Result<Status, ClientError>> + Send;
}

impl PodApi for PodClient {
    fn attach(&self, request: &AttachRequest) -> impl Future<Output = Result<Attachment, ClientError>> + Send {
        PodClient::attach(self, request)
    }
    fn detach(&self, id: &str, ifname: &str) -> impl Future<Output = Result<Detached, ClientError>> + Send {
        PodClient::detach(self, id, ifname)
    }
    fn check(&self, id: &str, ifname: &str) -> impl Future<Output = Result<Attachment, ClientError>> + Send {
        PodClient::check(self, id, ifname)
    }
    fn gc(&self, request: &GcRequest) -> impl Future<Output = Result<GcResponse, ClientError>> + Send {
        PodClient::gc(self, request)
    }
    fn status(&self) -> impl Future<Output = Result<Status, ClientError>> + Send {
        PodClient::status(self)
    }
}

impl<T: PodApi> PodApi for &T {
    fn attach(&self, request: &AttachRequest) -> impl Future<Output = Result<Attachment, ClientError>> + Send {
        (**self).attach(request)
    }
    fn detach(&self, id: &str, ifname: &str) -> impl Future<Output = Result<Detached, ClientError>> + Send {
        (**self).detach(id, ifname)
    }
    fn check(&self, id: &str, ifname: &str) -> impl Future<Output = Result<Attachment, ClientError>> + Send {
        (**self).check(id, ifname)
    }
    fn gc(&self, request: &GcRequest) -> impl Future<Output = Result<GcResponse, ClientError>> + Send {
        (**self).gc(request)
    }
    fn status(&self) -> impl Future<Output = Result<Status, ClientError>> + Send {
        (**self).status()
    }
}

/// What the plugin prints on stdout and exits with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// 0, or 1 with an error result on stdout.
    pub code: i32,
    /// Empty for a DEL, CHECK, GC or STATUS that succeeded.
    pub stdout: String,
}

/// One invocation. `env` holds the `CNI_*` variables, `stdin` the network
/// configuration (or why it could not be read), and `connect` makes the pod
/// API client for the socket the configuration names; it is called only when
/// the inputs are valid.
pub async fn run<A: PodApi>(
    env: &HashMap<String, String>,
    stdin: std::io::Result<&[u8]>,
    connect: impl FnOnce(&Path) -> A,
) -> Outcome {
    let config: &[u8] = stdin.as_ref().map_or(b"", |bytes| bytes);
    let command = match spec::command(env) {
        Ok(command) => command,
        Err(error) => return failed(config, &error),
    };
    // VERSION must answer whatever stdin holds: runtimes probe with no configuration at all.
    if command == Command::Version {
        return Outcome { code: 0, stdout: result::render(&result::version()) };
    }
    let stdin = match stdin {
        Ok(stdin) => stdin,
        Err(source) => {
            return failed(b"", &CniError::Io { what: "reading the network configuration from stdin", source });
        }
    };
    match execute(command, env, stdin, connect).await {
        Ok(stdout) => Outcome { code: 0, stdout },
        Err(error) => failed(stdin, &error),
    }
}

/// The error outcome, in the version `stdin` names if sdn-cni speaks it.
pub fn failed(stdin: &[u8], error: &CniError) -> Outcome {
    Outcome { code: 1, stdout: result::render(&result::error(spec::answer_version(stdin), error)) }
}

async fn execute<A: PodApi>(
    command: Command,
    env: &HashMap<String, String>,
    stdin: &[u8],
    connect: impl FnOnce(&Path) -> A,
) -> Result<String, CniError> {
    let conf = spec::netconf(stdin)?;
    if conf.version < command.since() {
        return Err(CniError::CommandTooNew { command, version: conf.version });
    }
    match command {
        Command::Add => add(spec::container(env, command)?, conf, connect).await,
        Command::Del => del(spec::container(env, command)?, conf, connect).await,
        Command::Check => check(spec::container(env, command)?, conf, connect).await,
        Command::Gc => gc(conf, connect).await,
        Command::Status => status(conf, connect).await,
        Command::Version => Ok(result::render(&result::version())),
    }
}

/// `CNI_NETNS`, which must exist: if it does not, the container is gone and
/// nothing is to be made or checked.
fn existing_netns(container: &Container) -> Result<&str, CniError> {
    let netns = container.netns.as_deref().ok_or_else(|| CniError::Environment(vec!["CNI_NETNS is missing".into()]))?;
    // An error (e.g. no permission to look) is left for the agent to report precisely.
    match Path::new(netns).try_exists() {
        Ok(false) => Err(CniError::NoNetns(netns.to_owned())),
        _ => Ok(netns),
    }
}

async fn add<A: PodApi>(
    container: Container,
    conf: NetConf,
    connect: impl FnOnce(&Path) -> A,
) -> Result<String, CniError> {
    let netns = existing_netns(&container)?;
    // sdn-cni creates the interface, so it is the first plugin of a chain: a
    // prevResult has nothing for it to build on and is ignored.
    let request = AttachRequest {
        id: container.id.clone(),
        netns: netns.into(),
        ifname: container.ifname.clone(),
        network: Some(conf.name),
        namespace: container.args.namespace.clone(),
        name: container.args.name.clone(),
    };
    let attachment = connect(&conf.socket).attach(&request).await.map_err(|e| agent_error(e, Command::Add))?;
    Ok(result::render(&result::add(conf.version, &attachment, netns, container.args.namespace.as_deref())))
}

async fn del<A: PodApi>(
    container: Container,
    conf: NetConf,
    connect: impl FnOnce(&Path) -> A,
) -> Result<String, CniError> {
    match connect(&conf.socket).detach(&container.id, &container.ifname).await {
        Ok(_) => Ok(String::new()),
        // DEL must succeed when there is nothing left to remove. The agent
        // answers so with success already; this keeps a 404 from failing it.
        Err(ClientError::Api(error)) if error.code == ErrorKind::Unknown => Ok(String::new()),
        Err(error) => Err(agent_error(error, Command::Del)),
    }
}

async fn check<A: PodApi>(
    container: Container,
    conf: NetConf,
    connect: impl FnOnce(&Path) -> A,
) -> Result<String, CniError> {
    let netns = existing_netns(&container)?;
    let attachment = connect(&conf.socket)
        .check(&container.id, &container.ifname)
        .await
        .map_err(|e| agent_error(e, Command::Check))?;
    if let Some(prev) = conf.prev_result {
        result::check_prev_result(prev, &attachment, &container.ifname, netns)?;
    }
    Ok(String::new())
}

async fn gc<A: PodApi>(conf: NetConf, connect: impl FnOnce(&Path) -> A) -> Result<String, CniError> {
    // Without the list, "every attachment not in it" would be every pod of the network.
    let valid = conf.valid_attachments.ok_or_else(|| {
        CniError::InvalidConfig(
            "GC needs cni.dev/valid-attachments (the attachments to keep; [] keeps none): refusing to \
             take its absence as \"release every pod\""
                .into(),
        )
    })?;
    let api = connect(&conf.socket);
    let request = GcRequest { network: conf.name, valid };
    api.gc(&request).await.map_err(|e| agent_error(e, Command::Gc))?;
    Ok(String::new())
}

async fn status<A: PodApi>(conf: NetConf, connect: impl FnOnce(&Path) -> A) -> Result<String, CniError> {
    let status = connect(&conf.socket).status().await.map_err(|e| agent_error(e, Command::Status))?;
    if status.ready {
        return Ok(String::new());
    }
    let reason = status.reason.unwrap_or_else(|| "it gave no reason".into());
    Err(CniError::NotAvailable(format!("the sdn-node agent is not ready: {reason}")))
}

/// The CNI error for a failed pod API call. An absent agent is worth a retry
/// for the pod commands; for STATUS it is the answer: not available.
fn agent_error(error: ClientError, command: Command) -> CniError {
    match error {
        ClientError::Unreachable { socket, reason } if command == Command::Status => {
            CniError::NotAvailable(format!("the sdn-node agent is not reachable on {}: {reason}", socket.display()))
        }
        ClientError::Unreachable { socket, reason } => CniError::Unreachable { socket, reason },
        ClientError::Api(api) => match api.code {
            ErrorKind::Invalid => CniError::Refused(api.error),
            ErrorKind::Exhausted => CniError::Exhausted(api.error),
            ErrorKind::Unknown => CniError::Unknown(api.error),
            ErrorKind::Differs => CniError::Differs(api.error),
            ErrorKind::Internal => CniError::AgentFailed(api.error),
        },
        protocol @ ClientError::Protocol { .. } => CniError::AgentFailed(protocol.to_string()),
    }
}
