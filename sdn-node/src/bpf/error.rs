//! The errors of the eBPF dataplane adapter.

use std::{io, path::PathBuf};

use aya::{
    maps::MapError,
    pin::PinError,
    programs::{ProgramError, links::LinkError},
};

/// What went wrong talking to the kernel's BPF side.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// The pin directory is not on a bpffs, so nothing could be pinned there.
    #[error("{} is not on a bpffs; mount one there first (`mount -t bpf bpf <dir>`)", path.display())]
    NotBpffs {
        /// The directory checked.
        path: PathBuf,
    },
    /// A file system operation on the pin directory failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The object (or its pinned maps) could not be loaded.
    #[error("loading the eBPF object: {0}")]
    Load(#[source] aya::EbpfError),
    /// The object lacks a map or program this adapter expects (a build mismatch).
    #[error("the eBPF object has no {kind} {name}")]
    Missing {
        /// "map" or "program".
        kind: &'static str,
        /// Its name.
        name: &'static str,
    },
    /// A map pinned by an earlier agent has another shape than this build's.
    #[error(
        "the pinned map {} does not match this build ({detail}); remove the node's pins \
         (`sdn-node cleanup`) and start again",
        path.display()
    )]
    IncompatiblePin {
        /// The pinned map.
        path: PathBuf,
        /// What differs.
        detail: String,
    },
    /// A map operation failed.
    #[error("map {map}: {source}")]
    Map {
        /// The map's name.
        map: &'static str,
        /// The error.
        #[source]
        source: MapError,
    },
    /// Loading (verifying) a program failed; the message carries the verifier log.
    #[error("program {program}: {source}")]
    Program {
        /// The program's name.
        program: &'static str,
        /// The error.
        #[source]
        source: ProgramError,
    },
    /// Attaching a program to an interface failed.
    #[error("attaching {program} to {iface}: {source}")]
    Attach {
        /// The program's name.
        program: &'static str,
        /// The interface.
        iface: String,
        /// The error.
        #[source]
        source: ProgramError,
    },
    /// A pinned link could not be opened or used.
    #[error("link {}: {source}", path.display())]
    Link {
        /// The link's pin.
        path: PathBuf,
        /// The error.
        #[source]
        source: LinkError,
    },
    /// A new link could not be pinned.
    #[error("pinning link {}: {source}", path.display())]
    Pin {
        /// The link's pin.
        path: PathBuf,
        /// The error.
        #[source]
        source: PinError,
    },
    /// An interface name that cannot be a Linux interface (nor a pin file name).
    #[error("invalid interface name {0:?}")]
    InvalidInterface(String),
    /// The flow maps were read from a network namespace other than their node's.
    #[error(
        "the flow maps under {} belong to a node in another network namespace (it has no tun0-br here): \
         give the node's namespace with --netns",
        pin_dir.display()
    )]
    OtherNamespace {
        /// The node's pin directory.
        pin_dir: std::path::PathBuf,
    },
    /// An entry read back from a map that this adapter cannot have written.
    #[error("map {map} holds an invalid entry: {detail}")]
    InvalidEntry {
        /// The map's name.
        map: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// A map the command reads is not pinned: no agent of this build ran the node.
    #[error("{} does not exist: no agent of this version has run this node (check --node and --bpffs)", path.display())]
    NoPin {
        /// The missing pin.
        path: std::path::PathBuf,
    },
}
