//! `guard doctor` on checked-in fake trees (tests/fixtures/doctor/<case>/,
//! only the files doctor reads), and once on this host. Runs as any user.

use std::path::{Path, PathBuf};

use guard::{
    commands::doctor,
    model::doctor::{Diagnosis, Finding, LIVE_CHECKS, Severity},
};

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/doctor")
        .join(case)
}

fn diagnose(case: &str) -> Diagnosis {
    doctor::diagnose(&fixture(case), None).unwrap()
}

fn level(report: &Diagnosis, check: &str) -> Severity {
    finding(report, check).level
}

fn finding<'a>(report: &'a Diagnosis, check: &str) -> &'a Finding {
    report
        .findings
        .iter()
        .find(|f| f.check == check)
        .unwrap_or_else(|| panic!("no `{check}` finding in {:#?}", report.findings))
}

/// The command's exit code, both as text and as JSON.
fn exit_code(case: &str) -> u8 {
    let root = fixture(case);
    let text = doctor::command(&root, None, false).unwrap();
    let json = doctor::command(&root, None, true).unwrap();
    assert_eq!(text, json);
    text
}

/// Every WARN and CRIT says how to fix it; OK and SKIP do not.
fn assert_fixes(report: &Diagnosis) {
    for f in &report.findings {
        match f.level {
            Severity::Warn | Severity::Crit => {
                assert!(f.fix.as_deref().is_some_and(|x| !x.is_empty()), "{f}");
            }
            Severity::Ok | Severity::Skip => assert_eq!(f.fix, None, "{f}"),
        }
    }
}

/// Off `/`, exactly the live-only checks are skipped.
fn assert_live_skipped(report: &Diagnosis) {
    for f in &report.findings {
        assert_eq!(
            f.level == Severity::Skip,
            LIVE_CHECKS.contains(&f.check),
            "{f}"
        );
    }
}

#[test]
fn doctor_finds_a_healthy_machine_all_ok() {
    let r = diagnose("healthy");
    assert_live_skipped(&r);
    assert!(
        r.findings
            .iter()
            .all(|f| f.level <= Severity::Ok && f.fix.is_none()),
        "{}",
        r.render()
    );
    assert_eq!(r.exit_code(), 0);
    assert_eq!(exit_code("healthy"), 0);
    let text = r.render();
    assert!(
        text.starts_with("GUARD OK - ") && text.lines().next().unwrap().ends_with("checks OK"),
        "{text}"
    );
    for section in [
        "sizing",
        "TCP timeouts",
        "other timeouts",
        "behaviour",
        "memory",
        "statistics since boot (2 CPUs)",
        "kernel log: 0 \"table full\" lines",
    ] {
        assert!(text.contains(section), "{section} missing from\n{text}");
    }
    assert!(text.ends_with("worst: OK (exit 0)\n"), "{text}");
}

#[test]
fn doctor_warns_of_a_small_loose_table() {
    let r = diagnose("warned");
    assert_live_skipped(&r);
    for check in ["max", "buckets", "established", "tcp-loose", "syncookies"] {
        assert_eq!(level(&r, check), Severity::Warn, "{}", finding(&r, check));
    }
    for check in ["conntrack", "table-full", "fill", "early-drop", "btf"] {
        assert_eq!(level(&r, check), Severity::Ok, "{}", finding(&r, check));
    }
    assert_eq!(
        finding(&r, "max").fix.as_deref(),
        Some("guard tune --apply")
    );
    assert!(
        finding(&r, "tcp-loose")
            .fix
            .as_deref()
            .unwrap()
            .starts_with("sysctl -w net.netfilter.nf_conntrack_tcp_loose=0")
    );
    assert_fixes(&r);
    assert_eq!(r.worst(), Severity::Warn);
    assert_eq!(exit_code("warned"), 1);
}

#[test]
fn doctor_finds_a_full_table_critical() {
    let r = diagnose("critical");
    let table_full = finding(&r, "table-full");
    assert_eq!(table_full.level, Severity::Crit);
    assert_eq!(
        table_full.reason,
        "drop=12345 since boot, 2 \"table full\" lines in the kernel log"
    );
    assert!(
        table_full
            .fix
            .as_deref()
            .unwrap()
            .contains("guard run --iface")
    );
    let fill = finding(&r, "fill");
    assert_eq!(fill.level, Severity::Crit);
    assert!(
        fill.reason.starts_with("count=249037 of max=262144 (95%)"),
        "{fill}"
    );
    assert_eq!(level(&r, "early-drop"), Severity::Warn);
    for check in ["max", "buckets", "established", "tcp-loose", "syncookies"] {
        assert_eq!(level(&r, check), Severity::Ok, "{}", finding(&r, check));
    }
    assert_fixes(&r);
    assert_eq!(exit_code("critical"), 2);
    let json = r.json();
    assert_eq!(json["exit"], 2);
    assert_eq!(json["worst"], "CRIT");
    assert_eq!(json["settings"]["sizing"]["max"], 262_144);
    assert_eq!(json["stats"]["counters"]["drop"], 12_345);
    assert_eq!(json["kernel_log"]["table_full_lines"], 2);
    let crit = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "table-full")
        .unwrap();
    assert_eq!(crit["level"], "CRIT");
    assert!(crit["fix"].is_string());
}

#[test]
fn doctor_without_conntrack_is_critical_with_the_modprobe_fix() {
    let r = diagnose("no-conntrack");
    let f = finding(&r, "conntrack");
    assert_eq!(f.level, Severity::Crit);
    assert_eq!(f.fix.as_deref(), Some("modprobe nf_conntrack"));
    assert!(r.facts.sysctls.is_empty());
    assert!(r.findings.iter().all(|f| f.check != "fill"));
    assert_fixes(&r);
    assert_eq!(exit_code("no-conntrack"), 2);
    assert_eq!(r.status_line(), "GUARD CRITICAL - 1 critical (conntrack)");
}

/// The binary as Nagios runs it: a status line first, and 3 (UNKNOWN)
/// when doctor cannot check at all.
#[test]
fn the_binary_prints_a_nagios_status_line_and_exits_3_when_it_cannot_check() {
    let run = |root: &Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_guard"))
            .args(["doctor", "--root"])
            .arg(root)
            .output()
            .expect("running guard doctor");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = run(&fixture("warned"));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.starts_with("GUARD WARNING - "), "{out}");
    let (code, out) = run(&fixture("no-such-case"));
    assert_eq!(code, Some(3), "{out}");
    assert!(out.starts_with("GUARD UNKNOWN - --root "), "{out}");
    // A command line it cannot take: UNKNOWN too, as Nagios reads it.
    for args in [&["doctor", "--bogus"][..], &["doctor", "--netns", "a/b"]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_guard"))
            .args(args)
            .output()
            .expect("running guard doctor");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {stdout}");
        assert!(stdout.starts_with("GUARD UNKNOWN - "), "{args:?}: {stdout}");
    }
}

#[test]
fn doctor_refuses_a_root_that_is_not_a_directory() {
    let err = doctor::diagnose(&fixture("healthy/proc/meminfo"), None).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
    assert!(doctor::diagnose(&fixture("no-such-case"), None).is_err());
}

#[test]
fn doctor_diagnoses_this_host() {
    let r = doctor::diagnose(Path::new("/"), None).unwrap();
    for check in LIVE_CHECKS {
        assert_ne!(level(&r, check), Severity::Skip, "{}", finding(&r, check));
    }
    assert_fixes(&r);
    assert!(r.exit_code() <= 2);
    assert!(r.render().contains("findings"));
    assert_eq!(r.json()["exit"], r.exit_code());
    let code = doctor::command(Path::new("/"), None, false).unwrap();
    assert!(code <= 2);
}
