//! BPF_PROG_TEST_RUN: running the real XDP program on a frame in memory,
//! without an interface. aya 0.14 has no public call for it.

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd},
};

const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// The `test` member of `union bpf_attr` (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    pad: u32,
}

/// What one test run returned.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The XDP action (`XDP_PASS` = 2, `XDP_DROP` = 1, ...).
    pub action: u32,
    /// Average nanoseconds per run, as the kernel measured it.
    pub duration_ns: u32,
    /// The frame as the program left it.
    pub data_out: Vec<u8>,
}

/// Runs the program `repeat` times on `frame` (at least 14 bytes: the
/// kernel refuses shorter XDP test input).
pub fn run(prog: BorrowedFd<'_>, frame: &[u8], repeat: u32) -> io::Result<Outcome> {
    let mut out = vec![0u8; frame.len() + 256];
    let mut attr = TestRunAttr {
        prog_fd: u32::try_from(prog.as_raw_fd()).map_err(io::Error::other)?,
        data_size_in: u32::try_from(frame.len()).map_err(io::Error::other)?,
        data_size_out: u32::try_from(out.len()).map_err(io::Error::other)?,
        data_in: frame.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat,
        ..TestRunAttr::default()
    };
    // SAFETY: bpf(2) reads the attr and the input buffer, and writes at most
    // data_size_out bytes to the output buffer; all outlive the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &raw mut attr,
            size_of::<TestRunAttr>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    out.truncate(attr.data_size_out as usize);
    Ok(Outcome {
        action: attr.retval,
        duration_ns: attr.duration,
        data_out: out,
    })
}
