//! Packet memory, read and written: only here. Each access is a load or
//! store of 1, 2, 4 or 8 bytes at an address checked against the packet's
//! end on the same register, in the shapes the verifier follows (see
//! [`Frame::at`]); bytes whose length is known only at run time are
//! copied by the helper ([`copy_in`]). The frame's length changes here too
//! ([`set_len`]). XDP's frames, and tc's (the egress program's, which
//! reads only).

use core::{arch::asm, mem::size_of};

use aya_ebpf::{
    helpers::{bpf_xdp_adjust_tail, bpf_xdp_load_bytes},
    programs::{TcContext, XdpContext},
};

/// A program's context, whose packet bounds the program reads: XDP's
/// `xdp_md`, or tc's `__sk_buff` (its linear part).
pub(crate) trait Frame {
    /// The packet address `offset` bytes in, hidden from LLVM's
    /// arithmetic.
    ///
    /// Without the barrier LLVM rewrites `data + off + n > data_end` into
    /// `off + n > data_end - data`, a comparison of plain numbers from
    /// which the verifier learns nothing, and rejects the read that
    /// follows. It may also keep one read of `data` in a register and
    /// copy it with a 32-bit move (the field is a u32), and the verifier
    /// does not know the copy for a packet pointer. So the read and the
    /// addition are both in the asm (whose offsets into the context must
    /// be constants of the instruction: the verifier refuses arithmetic
    /// on the context's pointer).
    fn at(&self, offset: usize) -> usize;
    /// The packet's end, read from the context at each use, for the
    /// reason [`Frame::at`] reads `data` in asm.
    fn end(&self) -> usize;
}

/// [`Frame`] for a context type whose pointer is `$ptr` and whose `data`
/// and `data_end` are u32 fields at `$data` and `$end` (checked below).
macro_rules! frame {
    ($ctx:ty, |$c:ident| $ptr:expr, $data:literal, $end:literal) => {
        impl Frame for $ctx {
            #[inline(always)]
            fn at(&self, offset: usize) -> usize {
                let $c = self;
                let p: usize;
                // SAFETY: reads `data` from the context the program was
                // given.
                unsafe {
                    asm!(
                        "{0} = *(u32 *)({1} + {data})",
                        "{0} += {2}",
                        out(reg) p,
                        in(reg) $ptr,
                        in(reg) offset,
                        data = const $data,
                        options(pure, readonly, nostack, preserves_flags)
                    );
                }
                p
            }

            #[inline(always)]
            fn end(&self) -> usize {
                let $c = self;
                let end: usize;
                // SAFETY: reads `data_end` from the context the program
                // was given.
                unsafe {
                    asm!(
                        "{0} = *(u32 *)({1} + {end})",
                        out(reg) end,
                        in(reg) $ptr,
                        end = const $end,
                        options(pure, readonly, nostack, preserves_flags)
                    );
                }
                end
            }
        }
    };
}

frame!(XdpContext, |c| c.ctx, 0, 4);
frame!(TcContext, |c| c.skb.skb, 76, 80);

const _: () = assert!(
    core::mem::offset_of!(aya_ebpf::bindings::xdp_md, data) == 0
        && core::mem::offset_of!(aya_ebpf::bindings::xdp_md, data_end) == 4
        && core::mem::offset_of!(aya_ebpf::bindings::__sk_buff, data) == 76
        && core::mem::offset_of!(aya_ebpf::bindings::__sk_buff, data_end) == 80
);

/// [`Frame::at`], for the XDP program's many callers.
#[inline(always)]
pub(crate) fn at(ctx: &XdpContext, offset: usize) -> usize {
    ctx.at(offset)
}

/// `v`, of which LLVM knows nothing more: so it keeps a check that the
/// verifier needs on this register but LLVM can prove from another.
#[inline(always)]
fn opaque(mut v: usize) -> usize {
    // SAFETY: a register move onto itself. (A truly empty asm would leave
    // two BTF line records on one instruction, which the kernel rejects.)
    unsafe { asm!("{0} = {0}", inout(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// [`Frame::end`], for the XDP program's many callers.
#[inline(always)]
pub(crate) fn end(ctx: &XdpContext) -> usize {
    ctx.end()
}

/// Whether the first `end` bytes of the packet are all there.
#[inline(always)]
pub(crate) fn within(ctx: &XdpContext, end: usize) -> bool {
    at(ctx, end) <= self::end(ctx)
}

/// Copies `T` from `offset` bytes into the packet, if it is all there.
///
/// `T` is a byte array: packet fields have no alignment guarantee. It is
/// read in the widest loads that fit (8, 4, 2, 1 bytes): left to itself
/// LLVM takes BPF to have no misaligned loads and reads it a byte at a
/// time, with a shift and an or for every byte of a field, on every
/// packet's path. (The
/// verifier allows misaligned loads of packet memory where the kernel has
/// efficient unaligned access, as on x86-64 and arm64; elsewhere it
/// refuses the program at load.)
#[inline(always)]
pub fn load<T: Copy>(ctx: &impl Frame, offset: usize) -> Option<T> {
    const { assert!(size_of::<T>() <= 8 * LOAD_WORDS) };
    let p = ctx.at(offset);
    if p + size_of::<T>() > ctx.end() {
        return None;
    }
    let n = size_of::<T>();
    let mut buf = core::mem::MaybeUninit::<[u64; LOAD_WORDS]>::uninit();
    let words = buf.as_mut_ptr().cast::<u64>();
    // SAFETY (the reads): the bytes at `p .. p + n` lie before data_end,
    // checked above on the same pointer; the asm only reads them, and a
    // narrower word is zero-extended, so its bytes in memory order are its
    // low bytes. (The writes): within `buf`, which holds `n` bytes.
    unsafe {
        for k in 0..n / 8 {
            words.add(k).write(read_at::<8>(p + 8 * k));
        }
        let (base, tail) = (n - n % 8, n % 8);
        if tail != 0 {
            let mut w = 0;
            let mut j = 0;
            if tail & 4 != 0 {
                w = read_at::<4>(p + base);
                j = 4;
            }
            if tail & 2 != 0 {
                w |= read_at::<2>(p + base + j) << (8 * j);
                j += 2;
            }
            if tail & 1 != 0 {
                w |= read_at::<1>(p + base + j) << (8 * j);
            }
            words.add(n / 8).write(w);
        }
        // T is a byte array of the `n` bytes written, in memory order.
        Some(core::ptr::read_unaligned(buf.as_ptr().cast::<T>()))
    }
}

/// The most words [`load`] reads: an IPv6 header.
const LOAD_WORDS: usize = 5;

/// `W` bytes (1, 2, 4 or 8) at packet address `p`, zero-extended.
///
/// # Safety
/// They must lie before data_end, checked on this pointer.
#[inline(always)]
pub(crate) unsafe fn read_at<const W: usize>(p: usize) -> u64 {
    let w: u64;
    // SAFETY: the caller's.
    unsafe {
        match W {
            8 => asm!("{0} = *(u64 *)({1} + 0)", out(reg) w, in(reg) p,
                options(pure, readonly, nostack, preserves_flags)),
            4 => asm!("{0} = *(u32 *)({1} + 0)", out(reg) w, in(reg) p,
                options(pure, readonly, nostack, preserves_flags)),
            2 => asm!("{0} = *(u16 *)({1} + 0)", out(reg) w, in(reg) p,
                options(pure, readonly, nostack, preserves_flags)),
            _ => asm!("{0} = *(u8 *)({1} + 0)", out(reg) w, in(reg) p,
                options(pure, readonly, nostack, preserves_flags)),
        }
    }
    w
}

/// `N` words from `offset` bytes into the packet, if they are all there,
/// each one 8-byte read: its bytes in memory order, so little-endian on
/// this target.
#[inline(always)]
pub fn words<const N: usize>(ctx: &XdpContext, offset: usize) -> Option<[u64; N]> {
    let p = at(ctx, offset);
    if p + 8 * N > end(ctx) {
        return None;
    }
    let mut w = [0u64; N];
    for (i, w) in w.iter_mut().enumerate() {
        // SAFETY: the eight bytes lie before data_end, checked above on the
        // same pointer.
        *w = unsafe { read_at::<8>(p + 8 * i) };
    }
    Some(w)
}

/// Copies `n` (at most `buf.len()`) packet bytes from `offset` into `buf`,
/// by the helper: for a length known only at run time, or bytes outside
/// the frame's linear part. The length is checked as the helper's
/// argument, whatever LLVM knows of it from the caller's checks.
#[inline(always)]
pub fn copy_in(ctx: &XdpContext, offset: usize, buf: &mut [u8], n: usize) -> bool {
    let n = opaque(n);
    if n == 0 || n > buf.len() {
        return false;
    }
    // SAFETY: the helper writes `n` bytes, which fit in `buf`.
    unsafe { bpf_xdp_load_bytes(ctx.ctx, offset as u32, buf.as_mut_ptr().cast(), n as u32) == 0 }
}

/// The frame's length.
#[inline(always)]
pub fn len(ctx: &XdpContext) -> usize {
    ctx.data_end() - ctx.data()
}

/// Makes the frame `new_len` bytes long, growing it into its tailroom or
/// cutting its tail (`bpf_xdp_adjust_tail`; no call when it is that long
/// already); whether it is now. Every bound checked before is void after.
#[inline(always)]
pub fn set_len(ctx: &XdpContext, new_len: usize) -> bool {
    let delta = new_len as i64 - len(ctx) as i64;
    // SAFETY: a helper call on this program's context.
    delta == 0 || unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta as i32) } == 0
}

/// Writes the `W` (1, 2, 4 or 8) low bytes of `v` at packet address `p`.
///
/// # Safety
/// They must lie before data_end, checked on this pointer.
#[inline(always)]
unsafe fn write_at<const W: usize>(p: usize, v: u64) {
    // SAFETY: the caller's.
    unsafe {
        match W {
            8 => asm!("*(u64 *)({0} + 0) = {1}", in(reg) p, in(reg) v,
                options(nostack, preserves_flags)),
            4 => asm!("*(u32 *)({0} + 0) = {1}", in(reg) p, in(reg) v,
                options(nostack, preserves_flags)),
            2 => asm!("*(u16 *)({0} + 0) = {1}", in(reg) p, in(reg) v,
                options(nostack, preserves_flags)),
            _ => asm!("*(u8 *)({0} + 0) = {1}", in(reg) p, in(reg) v,
                options(nostack, preserves_flags)),
        }
    }
}

/// Bytes whose place is aligned to 8, so that [`Span`] copies them in
/// 8-byte words (map values, such as the scratch space, are aligned).
#[repr(C, align(8))]
pub struct Words<const N: usize>(pub [u8; N]);

impl<const N: usize> core::ops::Deref for Words<N> {
    type Target = [u8; N];

    #[inline(always)]
    fn deref(&self) -> &[u8; N] {
        &self.0
    }
}

impl<const N: usize> core::ops::DerefMut for Words<N> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [u8; N] {
        &mut self.0
    }
}

/// `LEN` bytes of the packet (a multiple of 4), checked to be there once:
/// read, written and copied in place at offsets within them, where a
/// helper (`bpf_xdp_load_bytes`, `bpf_xdp_store_bytes`) would cost a call
/// and a copy each time.
#[derive(Clone, Copy)]
pub struct Span<const LEN: usize> {
    p: usize,
}

impl<const LEN: usize> Span<LEN> {
    /// The `LEN` bytes from `offset`, if they are all there.
    #[inline(always)]
    pub fn at(ctx: &XdpContext, offset: usize) -> Option<Self> {
        const { assert!(LEN % 4 == 0) };
        let p = at(ctx, offset);
        if p + LEN > end(ctx) {
            return None;
        }
        Some(Self { p })
    }

    /// The `W` bytes at `off`, zero-extended, in memory order (0 past the
    /// span, which callers' constant offsets never are).
    #[inline(always)]
    pub fn get<const W: usize>(self, off: usize) -> u64 {
        if off + W > LEN {
            return 0;
        }
        // SAFETY: within the span, checked against data_end on `p`.
        unsafe { read_at::<W>(self.p + off) }
    }

    /// Writes the `W` low bytes of `v` at `off`, in memory order (nothing
    /// past the span).
    #[inline(always)]
    pub fn set<const W: usize>(self, off: usize, v: u64) {
        if off + W > LEN {
            return;
        }
        // SAFETY: within the span, checked against data_end on `p`.
        unsafe { write_at::<W>(self.p + off, v) }
    }

    /// Copies the span into the first `LEN` bytes of `dst`.
    #[inline(always)]
    pub fn copy_to<const N: usize>(self, dst: &mut Words<N>) {
        const { assert!(LEN <= N) };
        let d = dst.0.as_mut_ptr();
        let mut k = 0;
        while k + 8 <= LEN {
            // SAFETY: the packet's bytes are within the span; the store
            // within `dst`, at a multiple of 8 from its aligned start.
            unsafe { d.add(k).cast::<u64>().write(read_at::<8>(self.p + k)) };
            k += 8;
        }
        if k < LEN {
            // SAFETY: as above; LEN is a multiple of 4.
            unsafe {
                d.add(k)
                    .cast::<u32>()
                    .write(read_at::<4>(self.p + k) as u32)
            };
        }
    }

    /// Writes the first `LEN` bytes of `src` over the span.
    #[inline(always)]
    pub fn copy_from<const N: usize>(self, src: &Words<N>) {
        const { assert!(LEN <= N) };
        let s = src.0.as_ptr();
        let mut k = 0;
        while k + 8 <= LEN {
            // SAFETY: as in `copy_to`, the other way.
            unsafe { write_at::<8>(self.p + k, s.add(k).cast::<u64>().read()) };
            k += 8;
        }
        if k < LEN {
            // SAFETY: as above; LEN is a multiple of 4.
            unsafe { write_at::<4>(self.p + k, u64::from(s.add(k).cast::<u32>().read())) };
        }
    }
}
