//! The node's bpffs pins: checking a pinned map still fits this build, link pin names, and
//! removing everything on cleanup.

use std::{fs, io, path::Path};

use aya::maps::{MapInfo, MapType, lpm_trie::Key};
use sdn_ebpf_common::{
    Affinity, AffinityKey, Backend, BackendKey, Counter, DROPS_BYTES, Decision, Endpoint, FlowKey, MAP_AFFINITY,
    MAP_BACKENDS, MAP_CONFIG, MAP_CONNTRACK, MAP_COUNTERS, MAP_DROPS, MAP_ENDPOINTS, MAP_NODES, MAP_REMOTES,
    MAP_SERVICES, MAP_TUNNEL, MAX_AFFINITY, MAX_BACKENDS, MAX_CONNTRACK, MAX_ENDPOINTS, MAX_NODES, MAX_REMOTES,
    MAX_SERVICES, NodeConfig, PeerNode, Remote, ServiceEntry, ServiceKey, Translation, Tunnel,
};

use super::BpfError;

/// Removes every pin under `pin_dir` (maps and links) and the directory itself. Links whose pin
/// goes detach; maps go once no program uses them. A missing directory is fine.
pub fn remove_pins(pin_dir: &Path) -> Result<(), BpfError> {
    for dir in [pin_dir.join("links"), pin_dir.join("maps")] {
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(BpfError::Io { action: "removing", path: dir, source }),
        }
    }
    match fs::remove_dir(pin_dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(BpfError::Io { action: "removing", path: pin_dir.to_owned(), source }),
    }
}

/// Whether `name` can be a Linux interface name (and so a file name under `links/`).
pub(super) fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name.bytes().any(|b| b == b'/' || b == 0 || b.is_ascii_whitespace() || b == b':')
}

pub(super) fn remove_if_exists(path: &Path) -> Result<(), BpfError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(BpfError::Io { action: "removing", path: path.to_owned(), source }),
    }
}

/// The shape a pinned map must have to be reused by this build.
pub(super) struct ExpectedMap {
    name: &'static str,
    map_type: MapType,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    /// Holds only what the agent writes on every start (settings) or may lose (counts): a pin
    /// of another shape is an older build's, and is replaced rather than refused.
    settings: bool,
}

/// A map of `map_type` keyed by `K` holding `V`.
fn map<K, V>(name: &'static str, map_type: MapType, max_entries: u32, settings: bool) -> ExpectedMap {
    let (key_size, value_size) = (std::mem::size_of::<K>() as u32, std::mem::size_of::<V>() as u32);
    ExpectedMap { name, map_type, key_size, value_size, max_entries, settings }
}

pub(super) fn expected_maps() -> [ExpectedMap; 11] {
    use MapType::{Array, Hash, LpmTrie, LruHash, PerCpuArray, RingBuf};
    [
        map::<u32, Endpoint>(MAP_ENDPOINTS, Hash, MAX_ENDPOINTS, false),
        map::<Key<u32>, Remote>(MAP_REMOTES, LpmTrie, MAX_REMOTES, false),
        map::<u32, NodeConfig>(MAP_CONFIG, Array, 1, true),
        // Counts, not state: a build with other decisions starts them again.
        map::<u32, Counter>(MAP_COUNTERS, PerCpuArray, Decision::COUNT as u32, true),
        map::<u32, Tunnel>(MAP_TUNNEL, Array, 1, true),
        map::<ServiceKey, ServiceEntry>(MAP_SERVICES, Hash, MAX_SERVICES, false),
        map::<BackendKey, Backend>(MAP_BACKENDS, Hash, MAX_BACKENDS, false),
        map::<FlowKey, Translation>(MAP_CONNTRACK, LruHash, MAX_CONNTRACK, false),
        map::<AffinityKey, Affinity>(MAP_AFFINITY, LruHash, MAX_AFFINITY, false),
        // Rebuilt from the registry on every start.
        map::<u32, PeerNode>(MAP_NODES, Hash, MAX_NODES, true),
        // Events nobody may have read yet: losing them on an upgrade is fine.
        map::<(), ()>(MAP_DROPS, RingBuf, DROPS_BYTES, true),
    ]
}

/// aya reuses a pinned map of the right name whatever its shape; a map left by an older build
/// with another value layout would be misread by the programs, so check it first.
pub(super) fn check_pinned_map(maps_dir: &Path, expected: &ExpectedMap) -> Result<(), BpfError> {
    let path = maps_dir.join(expected.name);
    if !path.exists() {
        return Ok(());
    }
    let info = MapInfo::from_pin(&path).map_err(|source| BpfError::Map { map: expected.name, source })?;
    let map_type = info.map_type().map_err(|source| BpfError::Map { map: expected.name, source })?;
    let found = (map_type, info.key_size(), info.value_size(), info.max_entries());
    let wanted = (expected.map_type, expected.key_size, expected.value_size, expected.max_entries);
    if found == wanted {
        Ok(())
    } else if expected.settings {
        tracing::info!("replacing {}: its layout is another build's ({found:?})", path.display());
        remove_if_exists(&path)
    } else {
        Err(BpfError::IncompatiblePin {
            path,
            detail: format!("type, key size, value size, max entries: found {found:?}, this build wants {wanted:?}"),
        })
    }
}

pub(super) fn check_bpffs(path: &Path) -> Result<(), BpfError> {
    if crate::bpffs::is_bpffs(path) { Ok(()) } else { Err(BpfError::NotBpffs { path: path.to_owned() }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_checked() {
        assert!(valid_ifname("veth0a1b2c3d"));
        assert!(valid_ifname("tun0-br"));
        for bad in ["", ".", "..", "a/b", "a b", "sixteen-chars-xx", "eth0:1"] {
            assert!(!valid_ifname(bad), "{bad:?}");
        }
    }
}
