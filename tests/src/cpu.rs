//! Which CPU a test's thread runs on: the program's per-CPU state (its
//! counters, sample budget, clock) is that CPU's, and BPF_PROG_TEST_RUN
//! runs the program on the caller's CPU.

/// The CPUs this process may run on.
#[must_use]
pub fn allowed() -> Vec<usize> {
    // SAFETY: sched_getaffinity of this thread (0) into a zeroed set.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &raw mut set),
            0,
            "sched_getaffinity: {}",
            std::io::Error::last_os_error()
        );
        set
    };
    // SAFETY: CPU_ISSET reads the set, for indices below its size.
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// Pins the calling thread to `cpu`.
pub fn pin(cpu: usize) {
    // SAFETY: sched_setaffinity on this thread (0) with a set of one CPU.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set),
            0,
            "sched_setaffinity to CPU {cpu}: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Pins the calling thread to the CPU it runs on now.
pub fn pin_here() {
    // SAFETY: sched_getcpu takes nothing.
    let cpu = unsafe { libc::sched_getcpu() };
    pin(usize::try_from(cpu).expect("a CPU"));
}
