//! The systemd unit in deploy/, as systemd would run it: `systemd-analyze
//! verify` accepts it, and its Exec lines that check the config run for
//! real: a good file passes, a bad one fails the start or the reload with
//! exit 2, which the unit does not restart on. (This VM's PID 1 is not
//! systemd, so the unit itself cannot be started here.)

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

const UNIT: &str = include_str!("../../deploy/guard.service");
const CONFIG: &str = "/etc/guard/guard.toml";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_guard"))
}

fn dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("guard-unit-{name}-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// The unit's `key=` values, in order.
fn values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

/// Runs one Exec line of the unit (guard's, with the config at `config`).
fn exec(line: &str, config: &Path) -> i32 {
    let line = line
        .replace("@BINDIR@/guard", &bin().display().to_string())
        .replace(CONFIG, &config.display().to_string());
    let mut words = line.split_whitespace();
    let program = words.next().unwrap();
    let out = Command::new(program).args(words).output().unwrap();
    out.status.code().unwrap()
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    let dir = dir("verify");
    // The man pages it names must exist: guard writes them.
    let man = dir.join("man");
    let status = Command::new(bin())
        .args(["generate", "man"])
        .arg(man.join("man8"))
        .status()
        .unwrap();
    assert!(status.success());
    let unit = dir.join("guard.service");
    fs::write(
        &unit,
        UNIT.replace("@BINDIR@", &bin().parent().unwrap().display().to_string()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .env("MANPATH", &man)
        .output()
        .expect("systemd-analyze (systemd) is installed");
    assert!(
        out.status.success(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_units_config_checks_pass_a_good_file_and_stop_a_bad_one() {
    assert_eq!(values(UNIT, "Type"), ["notify"]);
    let checks: Vec<&str> = values(UNIT, "ExecStartPre")
        .into_iter()
        .chain(values(UNIT, "ExecReload"))
        .filter(|l| l.contains("check-config"))
        .collect();
    assert_eq!(checks.len(), 2, "a check before start and before reload");
    let reload = values(UNIT, "ExecReload");
    assert!(
        reload[0].contains("check-config") && reload[1].contains("kill -HUP"),
        "the reload checks before it signals: {reload:?}"
    );
    assert!(values(UNIT, "ExecStart")[0].contains(&format!("run --config {CONFIG}")));

    let dir = dir("exec");
    let config = dir.join("guard.toml");
    fs::write(&config, "iface = [\"eth0\"]\nmode = \"enforce\"\n").unwrap();
    for line in &checks {
        assert_eq!(exec(line, &config), 0, "{line} on a good file");
    }
    fs::write(&config, "iface = [\"eth0\"]\nsyn-burst = 0\n").unwrap();
    let prevent = values(UNIT, "RestartPreventExitStatus");
    for line in &checks {
        let code = exec(line, &config);
        assert_eq!(code, 2, "{line} on a bad file");
        assert!(
            prevent
                .iter()
                .any(|v| v.split_whitespace().any(|c| c == "2")),
            "exit 2 would restart-loop: {prevent:?}"
        );
    }
    fs::remove_dir_all(&dir).unwrap();
}
