//! Pod ports get `sdn_from_pod` as a classic `cls_bpf` filter on a `clsact`
//! qdisc rather than as a TCX link: attaching a TCX link swaps the
//! device's program array and waits out an RCU grace period (about 10 ms
//! here, most of a pod's attach time), while adding the first filter does
//! not. The filter lives with the device, so it needs no pin: it survives
//! the agent, and goes when the veth is deleted. A later agent replaces its
//! program in place (same priority and handle), which `cls_bpf` does
//! atomically.

use std::process::Command;

use aya::programs::TcAttachType;
use aya::programs::tc::{NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle, qdisc_add_clsact};

use super::{BpfError, Dataplane, Program, classifier};

/// The one filter sdn keeps on a pod port.
const PRIORITY: u16 = 1;
const HANDLE: TcHandle = TcHandle::new(0, 1);

impl Dataplane {
    /// Attaches `program` as the ingress filter of `iface`, or replaces the
    /// program of the filter already there. Must run in `iface`'s namespace.
    pub fn attach_filter(&mut self, program: Program, iface: &str) -> Result<(), BpfError> {
        // Already there after an earlier attach; a real failure shows in the attach below.
        let _ = qdisc_add_clsact(iface);
        let prog = classifier(&mut self.ebpf, program)?;
        let attach_err = |source| BpfError::Attach { program: program.name(), iface: iface.to_owned(), source };
        let options = NlOptions { priority: PRIORITY, handle: HANDLE, ..Default::default() };
        let id = match prog.attach_with_options(iface, TcAttachType::Ingress, TcAttachOptions::Netlink(options)) {
            Ok(id) => id,
            // The filter exists (an earlier agent's): swap its program.
            Err(_) => {
                let existing = SchedClassifierLink::attached(iface, TcAttachType::Ingress, PRIORITY, HANDLE, None)
                    .map_err(|e| attach_err(aya::programs::ProgramError::IOError(e)))?;
                prog.attach_to_link(existing).map_err(attach_err)?
            }
        };
        // The program would detach the filter when it drops its link; the filter is meant
        // to outlive this agent, so the link is taken and forgotten.
        let link = prog.take_link(id).map_err(attach_err)?;
        std::mem::forget(link);
        Ok(())
    }

    /// The ids of the programs of `iface`'s ingress filters, from `tc -j filter show` (iproute2).
    /// Must run in `iface`'s namespace.
    pub fn filter_programs(iface: &str) -> Result<Vec<u32>, BpfError> {
        let out = Command::new("tc")
            .args(["-j", "filter", "show", "dev", iface, "ingress"])
            .output()
            .map_err(|source| BpfError::Io { action: "running tc (iproute2) for", path: iface.into(), source })?;
        let filters: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        Ok(filters
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["options"]["prog"]["id"].as_u64())
            .filter_map(|id| u32::try_from(id).ok())
            .collect())
    }
}
