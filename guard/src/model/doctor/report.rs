//! The diagnosis as people and programs read it: text and JSON.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{Diagnosis, Group, SIZING, Severity};
use crate::model::sizing::{MIB, RAM_PER_ENTRY};

impl Diagnosis {
    /// The worst level found.
    #[must_use]
    pub fn worst(&self) -> Severity {
        self.findings
            .iter()
            .map(|f| f.level)
            .max()
            .unwrap_or(Severity::Ok)
    }

    /// 0, 1 or 2, as Nagios reads it.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        self.worst().exit_code()
    }

    /// The first line, as a Nagios plugin's: `GUARD OK - ...`, or the state
    /// and the checks that made it.
    #[must_use]
    pub fn status_line(&self) -> String {
        let named = |level: Severity| {
            self.findings
                .iter()
                .filter(|f| f.level == level)
                .map(|f| f.check)
                .collect::<Vec<_>>()
        };
        let (crit, warn) = (named(Severity::Crit), named(Severity::Warn));
        let count =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let mut parts = Vec::new();
        if !crit.is_empty() {
            parts.push(format!(
                "{} ({})",
                count(crit.len(), "critical", "critical"),
                crit.join(", ")
            ));
        }
        if !warn.is_empty() {
            parts.push(format!(
                "{} ({})",
                count(warn.len(), "warning", "warnings"),
                warn.join(", ")
            ));
        }
        let state = match self.worst() {
            Severity::Skip | Severity::Ok => "OK",
            Severity::Warn => "WARNING",
            Severity::Crit => "CRITICAL",
        };
        if parts.is_empty() {
            parts.push(count(named(Severity::Ok).len(), "check OK", "checks OK"));
        }
        format!("GUARD {state} - {}", parts.join(", "))
    }

    /// The human report: the Nagios status line, the settings grouped,
    /// memory, statistics, kernel log, then one line per finding.
    #[must_use]
    pub fn render(&self) -> String {
        let f = &self.facts;
        let place = f.netns.as_ref().map_or_else(
            || format!("under {}", self.root.display()),
            |ns| format!("in netns {ns}"),
        );
        let mut out = format!(
            "{}\nconntrack {place}: net.netfilter.nf_conntrack_*\n",
            self.status_line(),
        );
        for group in Group::ALL {
            let mut entries: Vec<_> = f
                .sysctls
                .iter()
                .filter(|(k, _)| Group::of(k) == group)
                .collect();
            if entries.is_empty() {
                continue;
            }
            entries.sort_by_key(|(k, _)| SIZING.iter().position(|s| s == k));
            let _ = writeln!(out, "  {}", group.title());
            for (k, v) in entries {
                let _ = writeln!(out, "    {k:<36} {v}");
            }
        }
        if let Some(m) = f.memory() {
            let _ = writeln!(out, "memory");
            let source = if m.entry_from_slab {
                "slab"
            } else {
                "assumed: no slab object_size"
            };
            let _ = writeln!(out, "    {:<36} {} B ({source})", "entry", m.entry_bytes);
            let _ = writeln!(
                out,
                "    {:<36} {} MiB",
                "table at max, with buckets",
                m.table_bytes.div_ceil(MIB)
            );
            if let (Some(ram), Some(guides)) = (m.ram_bytes, m.field_guides_max) {
                let _ = writeln!(out, "    {:<36} {} MiB", "RAM", ram / MIB);
                let _ = writeln!(
                    out,
                    "    {:<36} {guides} (one entry per {} KiB of RAM)",
                    "field guides' max",
                    RAM_PER_ENTRY / 1024
                );
            }
        }
        match &f.stats {
            Ok(s) => {
                let _ = writeln!(out, "statistics since boot ({} CPUs)", s.cpus);
                for (k, v) in &s.counters {
                    let _ = writeln!(out, "    {k:<36} {v}");
                }
            }
            Err(e) => {
                let _ = writeln!(out, "statistics: {e}");
            }
        }
        let _ = match &f.table_full_lines {
            Ok(n) => writeln!(out, "kernel log: {n} \"table full\" lines"),
            Err(e) => writeln!(out, "kernel log: not readable ({e})"),
        };
        let _ = writeln!(out, "\nfindings");
        for finding in &self.findings {
            let _ = writeln!(out, "{finding}");
        }
        let _ = writeln!(out, "\nworst: {} (exit {})", self.worst(), self.exit_code());
        out
    }

    /// The report as JSON: settings by group, memory, statistics, kernel
    /// log, findings, worst level and exit code.
    #[must_use]
    pub fn json(&self) -> Value {
        let f = &self.facts;
        let settings: serde_json::Map<String, Value> = Group::ALL
            .iter()
            .map(|group| {
                let values: serde_json::Map<String, Value> = f
                    .sysctls
                    .iter()
                    .filter(|(k, _)| Group::of(k) == *group)
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.parse::<u64>().map_or_else(|_| json!(v), Value::from),
                        )
                    })
                    .collect();
                (group.key().to_owned(), Value::Object(values))
            })
            .collect();
        let memory = f.memory().map(|m| {
            json!({
                "entry_bytes": m.entry_bytes,
                "entry_bytes_from_slab": m.entry_from_slab,
                "table_bytes": m.table_bytes,
                "ram_bytes": m.ram_bytes,
                "field_guides_max": m.field_guides_max,
            })
        });
        let stats = match &f.stats {
            Ok(s) => json!({ "cpus": s.cpus, "counters": s.counters }),
            Err(e) => json!({ "error": e }),
        };
        let kernel_log = match &f.table_full_lines {
            Ok(n) => json!({ "readable": true, "table_full_lines": n }),
            Err(e) => json!({ "readable": false, "error": e }),
        };
        json!({
            "root": self.root,
            "netns": f.netns,
            "settings": settings,
            "memory": memory,
            "stats": stats,
            "kernel_log": kernel_log,
            "findings": self.findings,
            "worst": self.worst(),
            "exit": self.exit_code(),
        })
    }
}
