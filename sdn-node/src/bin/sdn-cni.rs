//! `sdn-cni`: the CNI plugin. The runtime starts it for every pod, so it
//! stays small: read the environment and stdin, run [`sdn_node::cni::run`]
//! on a single-threaded runtime, print, exit.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::ExitCode;

use sdn_node::cni::{self, spec::CniError};
use sdn_node::podapi::client::PodClient;

fn main() -> ExitCode {
    // A value that is not UTF-8 arrives with U+FFFD, which the checks refuse.
    let env: HashMap<String, String> = std::env::vars_os()
        .filter_map(|(key, value)| Some((key.into_string().ok()?, value)))
        .filter(|(key, _)| key.starts_with("CNI_"))
        .map(|(key, value)| (key, value.to_string_lossy().into_owned()))
        .collect();
    let mut stdin = Vec::new();
    let read = std::io::stdin().lock().read_to_end(&mut stdin).map(|_| stdin.as_slice());
    let outcome = match tokio::runtime::Builder::new_current_thread().enable_io().build() {
        Ok(runtime) => runtime.block_on(cni::run(&env, read, |socket| PodClient::new(socket))),
        Err(source) => cni::failed(&stdin, &CniError::Io { what: "starting the tokio runtime", source }),
    };
    let mut stdout = std::io::stdout().lock();
    if let Err(err) = stdout.write_all(outcome.stdout.as_bytes()).and_then(|()| stdout.flush()) {
        eprintln!("sdn-cni: writing the result to stdout: {err}");
        return ExitCode::FAILURE;
    }
    u8::try_from(outcome.code).map_or(ExitCode::FAILURE, ExitCode::from)
}
