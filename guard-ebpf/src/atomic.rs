//! Compare-and-swap, atomic add and atomic OR on map values.
//!
//! Rust's atomics do not help here: the bpf target is single-threaded to
//! LLVM, which lowers atomic read-modify-write to plain loads and stores.
//! Maps shared by all CPUs need the real BPF instructions, written out.

use core::arch::asm;

/// Compare-and-swap (BPF_ATOMIC | BPF_CMPXCHG, Linux 5.12+): if `*p ==
/// old`, store `new`. Returns the value `*p` had.
///
/// # Safety
/// `p` must point to a u64 in a map value.
#[inline(always)]
pub unsafe fn cmpxchg(p: *mut u64, old: u64, new: u64) -> u64 {
    let prev: u64;
    // SAFETY: the caller guarantees p is a valid map-value pointer. The
    // instruction compares with and returns into r0.
    unsafe {
        asm!(
            "r0 = cmpxchg_64({p} + 0, r0, {new})",
            p = in(reg) p,
            new = in(reg) new,
            inout("r0") old => prev,
            options(nostack),
        );
    }
    prev
}

/// Atomic add that returns the value before it (BPF_ATOMIC | BPF_ADD |
/// BPF_FETCH, Linux 5.12+): `*p += delta`, wrapping, without losing
/// another CPU's add or swap at the same time.
///
/// # Safety
/// `p` must point to a u64 in a map value.
#[inline(always)]
pub unsafe fn fetch_add(p: *mut u64, delta: u64) -> u64 {
    let prev: u64;
    // SAFETY: the caller guarantees p is a valid map-value pointer. The
    // instruction adds the register to memory and returns the old value
    // in it.
    unsafe {
        asm!(
            "{v} = atomic_fetch_add((u64 *)({p} + 0), {v})",
            p = in(reg) p,
            v = inout(reg) delta => prev,
            options(nostack),
        );
    }
    prev
}

/// Atomic OR (BPF_ATOMIC | BPF_OR, Linux 5.12+): `*p |= bits`, without
/// losing another CPU's bits set at the same time.
///
/// # Safety
/// `p` must point to a u64 in a map value.
#[inline(always)]
pub unsafe fn or(p: *mut u64, bits: u64) {
    // SAFETY: the caller guarantees p is a valid map-value pointer.
    unsafe {
        asm!(
            "lock *(u64 *)({p} + 0) |= {bits}",
            p = in(reg) p,
            bits = in(reg) bits,
            options(nostack),
        );
    }
}
