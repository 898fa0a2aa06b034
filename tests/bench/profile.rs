//! `cargo xtask bench --profile CASE`: where one case's time goes in
//! guard's XDP program, source line by source line.
//!
//! The case's frames run through BPF_PROG_TEST_RUN in a loop while `perf
//! record` samples every CPU on a timer (`cpu-clock`: a VM has no
//! hardware counters). Each sample whose instruction pointer is in the
//! program's JIT image is put on the source line of that instruction,
//! through the line info the kernel keeps with the program (its BTF line
//! records and their addresses in the image), and the lines are printed
//! by their share of the program's samples. A sample lands on the
//! instruction that waits: often the one after a load or a multiply whose
//! result it needs, so read a line's share together with the lines just
//! before it.

use std::{
    collections::HashMap,
    io,
    os::fd::{AsRawFd as _, BorrowedFd},
    path::Path,
    process::Command,
    time::Duration,
};

use guard_tests::xdp::Program;

const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_BTF_GET_FD_BY_ID: libc::c_long = 19;

/// The part of `struct bpf_prog_info` (include/uapi/linux/bpf.h) read
/// here, in its layout; the kernel fills at most the size given. It ends
/// on a whole field: padding would be bytes the kernel reads (a count of
/// tags to write) but nothing here sets.
#[repr(C)]
#[derive(Default)]
struct ProgInfo {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; 16],
    ifindex: u32,
    gpl_compatible: u32,
    netns_dev: u64,
    netns_ino: u64,
    nr_jited_ksyms: u32,
    nr_jited_func_lens: u32,
    jited_ksyms: u64,
    jited_func_lens: u64,
    btf_id: u32,
    func_info_rec_size: u32,
    func_info: u64,
    nr_func_info: u32,
    nr_line_info: u32,
    line_info: u64,
    jited_line_info: u64,
    nr_jited_line_info: u32,
    line_info_rec_size: u32,
    jited_line_info_rec_size: u32,
    nr_prog_tags: u32,
    prog_tags: u64,
}

/// `struct bpf_line_info`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct LineInfo {
    insn_off: u32,
    file_name_off: u32,
    line_off: u32,
    line_col: u32,
}

/// `struct bpf_btf_info`.
#[repr(C)]
#[derive(Default)]
struct BtfInfo {
    btf: u64,
    btf_size: u32,
    id: u32,
    name: u64,
    name_len: u32,
    kernel_btf: u32,
}

/// `bpf(cmd, attr)`, for the commands whose attr is a few words.
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<i64> {
    // SAFETY: bpf(2) reads (and for info, writes into the buffers named
    // by) `attr`, which outlives the call.
    let ret =
        unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_mut(attr), size_of::<T>()) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret)
}

/// The `info` member of `union bpf_attr`.
#[repr(C)]
struct InfoAttr {
    fd: u32,
    info_len: u32,
    info: u64,
}

fn info<T>(fd: i32, value: &mut T) -> io::Result<()> {
    let mut attr = InfoAttr {
        fd: u32::try_from(fd).map_err(io::Error::other)?,
        info_len: u32::try_from(size_of::<T>()).map_err(io::Error::other)?,
        info: std::ptr::from_mut(value) as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).map(drop)
}

/// The program's JIT image: where each function lies, and the source line
/// of each address a line record starts at.
struct Image {
    /// Start and length of each function's code.
    functions: Vec<(u64, u64)>,
    /// Line records by address: (address, "file:line  source").
    lines: Vec<(u64, String)>,
}

impl Image {
    fn read(prog: BorrowedFd<'_>) -> io::Result<Self> {
        let fd = prog.as_raw_fd();
        let mut counts = ProgInfo::default();
        info(fd, &mut counts)?;
        let mut ksyms = vec![0u64; counts.nr_jited_ksyms as usize];
        let mut lens = vec![0u32; counts.nr_jited_func_lens as usize];
        let mut lines = vec![LineInfo::default(); counts.nr_line_info as usize];
        let mut addrs = vec![0u64; counts.nr_jited_line_info as usize];
        let mut full = ProgInfo {
            nr_jited_ksyms: counts.nr_jited_ksyms,
            nr_jited_func_lens: counts.nr_jited_func_lens,
            jited_ksyms: ksyms.as_mut_ptr() as u64,
            jited_func_lens: lens.as_mut_ptr() as u64,
            nr_line_info: counts.nr_line_info,
            line_info: lines.as_mut_ptr() as u64,
            line_info_rec_size: u32::try_from(size_of::<LineInfo>()).map_err(io::Error::other)?,
            jited_line_info: addrs.as_mut_ptr() as u64,
            nr_jited_line_info: counts.nr_jited_line_info,
            jited_line_info_rec_size: 8,
            ..ProgInfo::default()
        };
        info(fd, &mut full)?;
        if addrs.iter().all(|&a| a == 0) {
            return Err(io::Error::other(
                "the kernel gave no JIT addresses (kernel.kptr_restrict?)",
            ));
        }
        let strings = btf_strings(full.btf_id)?;
        let text = |off: u32| {
            let s = strings.get(off as usize..).unwrap_or_default();
            let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
            String::from_utf8_lossy(&s[..end]).into_owned()
        };
        let mut records: Vec<(u64, &LineInfo)> = addrs.iter().copied().zip(&lines).collect();
        records.sort_by_key(|(a, _)| *a);
        // A line of the library (an inlined map lookup, a copy) is named
        // with guard's own line it follows in the image: which lookup.
        let mut own = String::new();
        let by_addr = records
            .into_iter()
            .map(|(a, l)| {
                let path = text(l.file_name_off);
                let file = path.rsplit('/').next().unwrap_or_default();
                let line = format!("{file}:{}  {}", l.line_col >> 10, text(l.line_off).trim());
                if path.contains("guard-ebpf/") || path.contains("guard-common/") {
                    own.clone_from(&line);
                    (a, line)
                } else if own.is_empty() {
                    (a, line)
                } else {
                    (a, format!("{line}  [after {own}]"))
                }
            })
            .collect();
        Ok(Self {
            functions: ksyms
                .iter()
                .zip(&lens)
                .map(|(&k, &n)| (k, u64::from(n)))
                .collect(),
            lines: by_addr,
        })
    }

    fn contains(&self, ip: u64) -> bool {
        self.functions
            .iter()
            .any(|&(start, len)| ip >= start && ip < start + len)
    }

    /// The source line of the instruction at `ip`.
    fn line(&self, ip: u64) -> &str {
        let i = self.lines.partition_point(|(a, _)| *a <= ip);
        i.checked_sub(1)
            .and_then(|i| self.lines.get(i))
            .map_or("?", |(_, l)| l.as_str())
    }
}

/// The string section of the BTF object `id`.
fn btf_strings(id: u32) -> io::Result<Vec<u8>> {
    let mut by_id = id;
    let fd = bpf(BPF_BTF_GET_FD_BY_ID, &mut by_id)?;
    let fd = i32::try_from(fd).map_err(io::Error::other)?;
    let mut sized = BtfInfo::default();
    let result = info(fd, &mut sized).and_then(|()| {
        let mut raw = vec![0u8; sized.btf_size as usize];
        let mut full = BtfInfo {
            btf: raw.as_mut_ptr() as u64,
            btf_size: sized.btf_size,
            ..BtfInfo::default()
        };
        info(fd, &mut full)?;
        // struct btf_header: magic, version, flags, hdr_len, type_off,
        // type_len, str_off, str_len.
        let word = |at: usize| {
            raw.get(at..at + 4)
                .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize)
        };
        let (hdr_len, str_off, str_len) = (word(4), word(16), word(20));
        raw.get(hdr_len + str_off..hdr_len + str_off + str_len)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| io::Error::other("a BTF string section out of bounds"))
    });
    // SAFETY: a descriptor this function opened and nothing else holds.
    unsafe { libc::close(fd) };
    result
}

/// Runs `frames` (in turn, `repeat` times each) through `prog` while perf
/// samples for `seconds`, and prints the `top` source lines by share.
pub fn run(prog: &Program, frames: &[Vec<u8>], repeat: u32, seconds: u32, top: usize) {
    let data = std::env::temp_dir().join(format!("guard-profile-{}.data", std::process::id()));
    let mut perf = Command::new("perf")
        .args(["record", "-q", "-e", "cpu-clock", "-F", "10000", "-a", "-o"])
        .arg(&data)
        .args(["--", "sleep", &seconds.to_string()])
        .spawn()
        .unwrap_or_else(|e| panic!("starting perf: {e} (Debian: apt-get install linux-perf)"));
    // perf's own start-up, then the loop until it is done.
    std::thread::sleep(Duration::from_millis(300));
    while perf.try_wait().expect("waiting for perf").is_none() {
        for f in frames {
            let _ = prog.time(f, repeat);
        }
    }
    let image = Image::read(prog.fd()).unwrap_or_else(|e| panic!("reading the JIT image: {e}"));
    let samples = samples(&data);
    let _ = std::fs::remove_file(&data);

    let (mut total, mut ours) = (0u64, 0u64);
    let mut by_line: HashMap<&str, u64> = HashMap::new();
    let mut by_function: HashMap<String, u64> = HashMap::new();
    for (ip, sym) in &samples {
        total += 1;
        if !image.contains(*ip) {
            continue;
        }
        ours += 1;
        *by_line.entry(image.line(*ip)).or_default() += 1;
        // bpf_prog_<tag>_<name>
        let name = sym
            .strip_prefix("bpf_prog_")
            .and_then(|s| s.split_once('_'))
            .map_or(sym.as_str(), |(_, name)| name)
            .to_owned();
        *by_function.entry(name).or_default() += 1;
    }
    assert!(
        ours > 0,
        "no samples in the program: is perf allowed to sample the kernel?"
    );
    #[expect(clippy::cast_precision_loss, reason = "shares of sample counts")]
    let share = |n: u64| 100.0 * n as f64 / ours as f64;
    println!("{ours} of {total} samples (every CPU, {seconds} s) in guard's program; by function:");
    let mut functions: Vec<_> = by_function.into_iter().collect();
    functions.sort_by_key(|f| std::cmp::Reverse(f.1));
    for (name, n) in functions {
        println!("{:6.1}%  {name}", share(n));
    }
    println!("\nby source line (the {top} largest):");
    let mut lines: Vec<_> = by_line.into_iter().collect();
    lines.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    for (line, n) in lines.into_iter().take(top) {
        let line: String = line.chars().take(160).collect();
        println!("{:6.1}%  {line}", share(n));
    }
}

/// Each sample's instruction pointer and symbol, from `perf script`.
fn samples(data: &Path) -> Vec<(u64, String)> {
    let out = Command::new("perf")
        .args(["script", "-F", "ip,sym", "-i"])
        .arg(data)
        .output()
        .unwrap_or_else(|e| panic!("running perf script: {e}"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let ip = u64::from_str_radix(words.next()?, 16).ok()?;
            Some((ip, words.next().unwrap_or_default().to_owned()))
        })
        .collect()
}
