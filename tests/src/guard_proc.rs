//! Running the real `guard` binary: start, wait until attached, signal,
//! collect output. A process still running when dropped is killed, so a
//! failing test never leaves a guard attached.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use crate::net::TestNet;

/// Where guard pins the maps of the test network's victim interface.
#[must_use]
pub fn pin_dir(net: &TestNet) -> PathBuf {
    Path::new("/sys/fs/bpf/guard/netns")
        .join(&net.victim)
        .join(&net.victim_if)
}

/// Starts `guard run` on the victim interface with `extra` flags and waits
/// until it is ready: attached, and its controller's first tick done
/// (it publishes guard.json then).
#[must_use]
pub fn start_on(net: &TestNet, extra: &[&str]) -> Guard {
    let mut args = vec!["run", "--netns", &net.victim, "--iface", &net.victim_if];
    args.extend_from_slice(extra);
    let mut guard = Guard::start(&args);
    guard.wait_for(&pin_dir(net).join("GUARD_COUNTERS"));
    guard.wait_ready();
    guard
}

/// `guard stats --json` for the victim interface, as a user would read it.
#[must_use]
pub fn stats(net: &TestNet) -> serde_json::Value {
    // One reading, no rates: tests poll this and must not wait a second.
    let out = run(&[
        "stats",
        "--json",
        "--interval",
        "0",
        "--top",
        "100000",
        "--netns",
        &net.victim,
        "--iface",
        &net.victim_if,
    ]);
    out.assert_code(0);
    let json: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("stats JSON: {e}\n{out}"));
    json["interfaces"][0].clone()
}

/// The row of `source` among a [`stats`] document's top sources, if it
/// is one of them.
#[must_use]
pub fn top_source<'a>(stats: &'a serde_json::Value, source: &str) -> Option<&'a serde_json::Value> {
    stats["top_sources"]
        .as_array()
        .unwrap_or_else(|| panic!("no top_sources in {stats}"))
        .iter()
        .find(|row| row["source"] == source)
}

/// The counters of a [`stats`] document, by name.
#[must_use]
pub fn counters(stats: &serde_json::Value) -> std::collections::BTreeMap<String, u64> {
    stats["counters"]
        .as_object()
        .unwrap_or_else(|| panic!("no counters in {stats}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().expect("counter is a number")))
        .collect()
}

/// Waits until guard has counted `packets` packets (frames are counted in
/// the receiver's softirq, a moment after send returns) or 10 s pass.
#[must_use]
pub fn stats_after(net: &TestNet, packets: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = stats(net);
        if counters(&now)["packets"] >= packets || Instant::now() > deadline {
            return now;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// How long guard may take to attach, and to exit after a signal.
const TIMEOUT: Duration = Duration::from_secs(20);

/// What the guard with `pid` published that it runs (guard.json), in
/// whichever namespace's runtime directory it keeps.
#[must_use]
pub fn run_status(pid: u32) -> Option<guard::model::status::RunStatus> {
    guard::host::instances::all()
        .into_iter()
        .filter_map(|i| guard::host::status_file::read_run(&i.dir))
        .find(|run| run.pid == pid)
}

/// The guard binary under test: `GUARD_BIN`, or the one next to this test
/// executable's `deps/` directory.
#[must_use]
pub fn guard_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("GUARD_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps")
        .join("guard")
}

/// What a finished guard run left.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// Panics with the whole output unless the exit code is `code`.
    pub fn assert_code(&self, code: i32) {
        assert_eq!(self.status.code(), Some(code), "unexpected exit: {self}");
    }
}

impl From<std::process::Output> for Finished {
    fn from(out: std::process::Output) -> Self {
        Self {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl std::fmt::Display for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs guard to completion (for commands that end by themselves).
#[must_use]
pub fn run(args: &[&str]) -> Finished {
    let out = Command::new(guard_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("starting {}: {e}", guard_bin().display()));
    out.into()
}

/// A `guard run` in the background.
pub struct Guard {
    child: Option<Child>,
    args: Vec<String>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Guard {
    /// Starts `guard` with `args`.
    #[must_use]
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    /// Starts `guard` with `args` and these environment variables.
    #[must_use]
    pub fn start_with_env(args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Self {
        Self::start_command(
            Command::new(guard_bin())
                .args(args)
                .envs(env.iter().copied()),
            args,
        )
    }

    /// Starts guard in network namespace `ns` the way an operator would
    /// from a shell: `ip netns exec NS guard ARGS` (a mount namespace and a
    /// /sys of its own, with no bpffs).
    #[must_use]
    pub fn start_in_netns(ns: &str, args: &[&str]) -> Self {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", ns])
            .arg(guard_bin())
            .args(args);
        Self::start_command(&mut command, args)
    }

    /// Starts `command`, which runs guard with `args` (for messages).
    #[must_use]
    pub fn start_command(command: &mut Command, args: &[&str]) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", guard_bin().display()));
        let stdout = collect(child.stdout.take().expect("piped stdout"));
        let stderr = collect(child.stderr.take().expect("piped stderr"));
        Self {
            child: Some(child),
            args: args.iter().map(ToString::to_string).collect(),
            stdout,
            stderr,
        }
    }

    /// Waits until `path` exists (guard pins its maps once attached).
    /// Panics with guard's output if it exits or times out first.
    pub fn wait_for(&mut self, path: &Path) {
        let deadline = Instant::now() + TIMEOUT;
        while !path.exists() {
            let child = self.child.as_mut().expect("running");
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!(
                    "guard {} exited with {status} before {} appeared:\n{}",
                    self.args.join(" "),
                    path.display(),
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "guard {}: {} did not appear within {TIMEOUT:?}:\n{}",
                self.args.join(" "),
                path.display(),
                self.stderr()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until guard has published that it runs (guard.json with its
    /// pid): attached, and its controller's first tick done.
    pub fn wait_ready(&self) {
        let pid = self.pid().expect("running");
        let deadline = Instant::now() + TIMEOUT;
        while run_status(pid).is_none() {
            assert!(
                Instant::now() < deadline,
                "guard never said it was ready:\n{}",
                self.stderr()
            );
            // Exited, not yet reaped: no need to wait out the deadline.
            assert!(
                guard::host::instances::runs(pid),
                "guard {} exited before it said it was ready:\n{}",
                self.args.join(" "),
                self.stderr()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` without waiting (SIGHUP, say).
    pub fn signal(&self, signal: i32) {
        let child = self.child.as_ref().expect("running");
        let pid = i32::try_from(child.id()).expect("pid fits i32");
        // SAFETY: signals the child we started and still own.
        unsafe { libc::kill(pid, signal) };
    }

    /// Waits until guard's stderr contains `text`; panics with the log if
    /// it does not within the timeout.
    pub fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + TIMEOUT;
        while !self.stderr().contains(text) {
            assert!(
                Instant::now() < deadline,
                "guard never logged `{text}`:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id while it runs.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What guard has written to stderr so far.
    #[must_use]
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }

    /// Waits for guard to exit by itself (a refusal, say); if it still
    /// runs after the timeout, stops it and panics with its log: a test of
    /// a refusal fails rather than hangs when guard starts after all.
    #[must_use]
    pub fn exited(mut self) -> Finished {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("running");
            if child.try_wait().expect("try_wait").is_some() {
                // Signal 0 sends nothing: this collects the exit and output.
                return self.stop(0);
            }
            if Instant::now() > deadline {
                let args = self.args.join(" ");
                let finished = self.stop(libc::SIGTERM);
                panic!("guard {args} still ran after {TIMEOUT:?}:\n{finished}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` and waits for guard to exit.
    #[must_use]
    pub fn stop(mut self, signal: i32) -> Finished {
        let mut child = self.child.take().expect("running");
        let pid = i32::try_from(child.id()).expect("pid fits i32");
        // SAFETY: signals the child we started and still own.
        unsafe { libc::kill(pid, signal) };
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "guard {} did not exit within {TIMEOUT:?} of signal {signal}:\n{}",
                    self.args.join(" "),
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        // The reader threads finish at EOF, right after exit.
        thread::sleep(Duration::from_millis(50));
        Finished {
            status,
            stdout: self.stdout.lock().expect("stdout lock").clone(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Guard {
    /// A test that fails with guard still running stops it the way an
    /// operator would: SIGTERM, so it restores what it changed (a killed
    /// guard's state file would be restored by the next test's guard, long
    /// after that test put the host back). SIGKILL only if it hangs.
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: signals the child we started and still own.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn collect(mut pipe: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let buf = Arc::new(Mutex::new(String::new()));
    let out = Arc::clone(&buf);
    thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            out.lock()
                .expect("output lock")
                .push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    buf
}

/// `GET /metrics` over a plain TCP connection.
#[must_use]
pub fn scrape(port: u16) -> String {
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics endpoint");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    body.to_owned()
}
