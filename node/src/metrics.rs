//! `Metrics`: the node's counters, gauges and timing summaries, rendered as
//! Prometheus text at `GET /metrics` with names prefixed `ledger_`. It is a
//! cheap `Clone` handle; every subsystem records through it.
//!
//! This is a `std::sync::Mutex` and not a Tokio mutex because no `.await`
//! happens while it is held; each update is a map lookup and an add.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

type Labels = Vec<(String, String)>;

#[derive(Default)]
struct Registry {
    counters: BTreeMap<(String, Labels), u64>,
    gauges: BTreeMap<(String, Labels), i64>,
    /// name -> (count, sum of seconds)
    summaries: BTreeMap<String, (u64, f64)>,
    help: BTreeMap<String, &'static str>,
}

/// Shared handle to the node's metrics.
#[derive(Clone, Default)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
}

fn owned_labels(labels: &[(&str, &str)]) -> Labels {
    labels
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A panic while holding this lock cannot leave a half-updated
        // number, so a poisoned lock is still safe to use.
        ledger::sync::lock(&self.registry)
    }

    /// Sets the `# HELP` text of a metric (name without the `ledger_` prefix).
    pub fn describe(&self, name: &str, help: &'static str) {
        self.registry().help.insert(name.to_string(), help);
    }

    /// Adds one to a counter (name without the `ledger_` prefix).
    pub fn inc(&self, name: &str, labels: &[(&str, &str)]) {
        self.add(name, labels, 1);
    }

    pub fn add(&self, name: &str, labels: &[(&str, &str)], amount: u64) {
        *self
            .registry()
            .counters
            .entry((name.to_string(), owned_labels(labels)))
            .or_default() += amount;
    }

    pub fn set(&self, name: &str, labels: &[(&str, &str)], value: i64) {
        self.registry()
            .gauges
            .insert((name.to_string(), owned_labels(labels)), value);
    }

    /// Records one duration, in seconds, into a summary (count and sum).
    pub fn observe(&self, name: &str, seconds: f64) {
        let mut registry = self.registry();
        let entry = registry.summaries.entry(name.to_string()).or_default();
        entry.0 += 1;
        entry.1 += seconds;
    }

    /// Current value of a counter, for tests and status views.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.registry()
            .counters
            .get(&(name.to_string(), owned_labels(labels)))
            .copied()
            .unwrap_or(0)
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let registry = self.registry();
        let mut out = String::new();
        let mut last_name = String::new();
        let mut header = |out: &mut String, name: &str, kind: &str| {
            if name != last_name {
                if let Some(help) = registry.help.get(name) {
                    let _ = writeln!(out, "# HELP ledger_{name} {help}");
                }
                let _ = writeln!(out, "# TYPE ledger_{name} {kind}");
                last_name = name.to_string();
            }
        };
        for ((name, labels), value) in &registry.counters {
            header(&mut out, name, "counter");
            let _ = writeln!(out, "ledger_{name}{} {value}", render_labels(labels));
        }
        for ((name, labels), value) in &registry.gauges {
            header(&mut out, name, "gauge");
            let _ = writeln!(out, "ledger_{name}{} {value}", render_labels(labels));
        }
        for (name, (count, sum)) in &registry.summaries {
            header(&mut out, name, "summary");
            let _ = writeln!(out, "ledger_{name}_count {count}");
            let _ = writeln!(out, "ledger_{name}_sum {sum}");
        }
        out
    }
}

fn render_labels(labels: &Labels) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(key, value)| {
            let escaped = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{key}=\"{escaped}\"")
        })
        .collect();
    format!("{{{}}}", inner.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let metrics = Metrics::new();
        metrics.describe("blocks_accepted_total", "Blocks accepted.");
        metrics.inc("blocks_accepted_total", &[]);
        metrics.inc("txs_rejected_total", &[("reason", "fee_too_low")]);
        metrics.set("height", &[], 7);
        metrics.observe("block_validation_seconds", 0.5);
        let text = metrics.render();
        assert!(text.contains("# HELP ledger_blocks_accepted_total Blocks accepted."));
        assert!(text.contains("ledger_blocks_accepted_total 1"));
        assert!(text.contains("ledger_txs_rejected_total{reason=\"fee_too_low\"} 1"));
        assert!(text.contains("ledger_height 7"));
        assert!(text.contains("ledger_block_validation_seconds_count 1"));
        assert_eq!(
            metrics.counter("txs_rejected_total", &[("reason", "fee_too_low")]),
            1
        );
    }
}
