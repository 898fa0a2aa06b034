//! A short attack lab in CI: one scenario, two defences, a few seconds.
//! The full lab is a benchmark (`cargo xtask lab`); this checks that the
//! lab produces its report and that its numbers say what the lab exists to
//! show: without a defence the table fills, with guard it does not.

use std::{fs, time::Duration};

use guard_lab::{
    defence::{BUCKETS, Defence, MAX},
    report::summarize,
    runner::{self, Options},
    scenario::Scenario,
    traffic,
};
use guard_tests::{host, kernel_test};

#[test]
fn short_lab_fills_the_table_without_a_defence_and_not_with_guard() {
    let _kernel = kernel_test!();
    traffic::require_trafgen();
    let before = (host::sysctl(MAX), host::sysctl(BUCKETS));
    let out = std::env::temp_dir().join(format!("guardt-{}-lab", std::process::id()));
    let opts = Options {
        scenarios: vec![Scenario::SynFlood],
        defences: vec![Defence::Defaults, Defence::GuardEnforce],
        lead: Duration::from_secs(2),
        attack: Duration::from_secs(4),
        tail: Duration::from_secs(1),
        table: 16_384,
        legit_rate: 20,
        out: out.clone(),
        helper: env!("CARGO_BIN_EXE_guard-lab").into(),
    };
    let report = runner::run(&opts).expect("the lab runs");
    assert_eq!(
        (host::sysctl(MAX), host::sysctl(BUCKETS)),
        before,
        "the lab left the global knobs changed"
    );
    for file in [
        "report.md",
        "summary.json",
        "syn-flood.json",
        "syn-flood-fill.svg",
        "syn-flood-legit.svg",
    ] {
        let path = out.join(file);
        let meta = fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(meta.len() > 0, "{} is empty", path.display());
    }
    let md = fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(
        md.contains("| defaults |") && md.contains("| guard-enforce |"),
        "{md}"
    );

    let runs = &report.sections[0].runs;
    let [defaults, guard] = [&runs[0], &runs[1]].map(summarize);
    // Every run sampled every second of lead + attack + tail.
    for run in runs {
        assert!(
            run.samples.len() >= 6,
            "{} sampled {}",
            run.defence,
            run.samples.len()
        );
        // A generator restarted after a busy ring is fine, and so is a
        // signature guard learned; anything else went wrong.
        assert!(
            run.notes
                .iter()
                .all(|n| n.starts_with("trafgen gave up") || n.starts_with("signature ")),
            "{}: {:?}",
            run.defence,
            run.notes
        );
    }
    assert!(
        defaults.attack_sent > 100_000,
        "the flood sent {}",
        defaults.attack_sent
    );
    assert!(
        defaults.peak_fill >= 99.0 && defaults.table_full_drops > 0,
        "without a defence the table should fill and drop: {defaults:?}"
    );
    assert!(
        guard.peak_fill < 90.0 && guard.table_full_drops == 0,
        "with guard the table should stay below full: {guard:?}"
    );
    assert!(
        guard.xdp_dropped.unwrap_or(0) > 100_000,
        "guard dropped {:?} of {} flood packets",
        guard.xdp_dropped,
        guard.attack_sent
    );
    assert!(guard.legit_attempts > 0 && defaults.legit_attempts > 0);
    let _ = fs::remove_dir_all(&out);
}
