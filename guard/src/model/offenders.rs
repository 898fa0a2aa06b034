//! Sources over their limits, as the log tells them: the data plane says
//! so each time a source crosses its limit, which for one at its limit is
//! many times a second. The log says it once per source per interval, and
//! the summary line names the sources that crossed most often.

use std::collections::BTreeMap;

use guard_common::SourceKey;

/// The limited sources of the current interval.
#[derive(Debug, Default)]
pub struct Offenders {
    /// Limited events per source since the last summary.
    counts: BTreeMap<SourceKey, u64>,
}

impl Offenders {
    /// One limited event of `source`; true when it is the source's first
    /// in this interval, the one to log.
    pub fn limited(&mut self, source: SourceKey) -> bool {
        let n = self.counts.entry(source).or_default();
        *n += 1;
        *n == 1
    }

    /// The `n` sources limited most often in the interval, most first, and
    /// a new interval begins.
    pub fn take_top(&mut self, n: usize) -> Vec<(SourceKey, u64)> {
        let mut all: Vec<(SourceKey, u64)> = std::mem::take(&mut self.counts).into_iter().collect();
        all.sort_by(|a, b| {
            b.1.cmp(&a.1)
                .then_with(|| a.0.to_string().cmp(&b.0.to_string()))
        });
        all.truncate(n);
        all
    }
}

/// The summary line's tail naming the top offenders, if any.
#[must_use]
pub fn describe_top(top: &[(SourceKey, u64)]) -> Option<String> {
    (!top.is_empty()).then(|| {
        let names: Vec<String> = top.iter().map(|(k, n)| format!("{k} ({n}x)")).collect();
        format!("over their limits: {}", names.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_logged_once_per_interval_and_the_busiest_are_named() {
        let (a, b, c) = (
            SourceKey::v4([198, 18, 0, 7], 32),
            SourceKey::v4([198, 18, 0, 8], 32),
            SourceKey::v4([198, 18, 0, 9], 32),
        );
        let mut o = Offenders::default();
        assert!(o.limited(a));
        assert!(!o.limited(a), "a second time in the interval");
        for _ in 0..5 {
            o.limited(b);
        }
        o.limited(c);
        let top = o.take_top(2);
        assert_eq!(top, [(b, 5), (a, 2)]);
        assert_eq!(
            describe_top(&top).unwrap(),
            "over their limits: 198.18.0.8 (5x), 198.18.0.7 (2x)"
        );
        assert!(o.limited(a), "a new interval logs it again");
        assert_eq!(describe_top(&Offenders::default().take_top(3)), None);
    }
}
