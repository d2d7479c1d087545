//! The TC programs that sit on the ports of `br0` and make the packet-path decisions.
//!
//! For now this is a shell: it holds only `tc_pass`, which lets every packet through, so the
//! object is non-empty and loadable. The real flow programs (local endpoint redirect, VXLAN to a
//! remote subnet, default to `tun0`) and their maps come with the node-agent issue.
#![no_std]
#![no_main]

use aya_ebpf::{bindings::TC_ACT_OK, macros::classifier, programs::TcContext};

/// Passes every packet on unchanged.
#[classifier]
pub fn tc_pass(_ctx: TcContext) -> i32 {
    TC_ACT_OK
}

// Never reached: the programs do not panic, and a panic path the optimiser could not remove would
// show up as this unbounded loop, which the verifier rejects at load time.
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
