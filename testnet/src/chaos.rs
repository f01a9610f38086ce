//! The pure half of `testnet chaos`: which faults exist, the fault schedule
//! a seed gives, and the report with its verdict. Nothing here touches a
//! container or a clock, so the schedule is a function of (seed, rounds,
//! enabled faults, number of nodes) alone and the verdict a function of
//! the measurements; `cmd/chaos` carries the schedule out.

use crate::stats::percentile;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// A kind of fault, as named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// SIGKILL a node, leave it down a while, start it again.
    Kill,
    /// Freeze a node (every process in it), then thaw it.
    Pause,
    /// Cut the nodes into two groups that cannot reach each other.
    Partition,
    /// Add latency, jitter and loss to some nodes' network.
    Netem,
}

impl FaultKind {
    pub const ALL: [FaultKind; 4] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::Netem,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::Netem => "netem",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultKind {
    type Err = String;

    fn from_str(text: &str) -> Result<FaultKind, String> {
        FaultKind::ALL
            .into_iter()
            .find(|kind| kind.name() == text.trim())
            .ok_or_else(|| {
                format!("unknown fault {text:?} (expected kill, pause, partition or netem)")
            })
    }
}

/// One round's fault, with its targets (node indexes, 0-based) and how long
/// it is held before healing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum Fault {
    Kill {
        node: usize,
        down_ms: u64,
    },
    Pause {
        node: usize,
        hold_ms: u64,
    },
    Partition {
        /// One side; the other side is every other node.
        side: Vec<usize>,
        hold_ms: u64,
    },
    Netem {
        nodes: Vec<usize>,
        delay_ms: u32,
        jitter_ms: u32,
        /// Loss in whole percent.
        loss_percent: u32,
        hold_ms: u64,
    },
}

impl Fault {
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::Kill { .. } => FaultKind::Kill,
            Fault::Pause { .. } => FaultKind::Pause,
            Fault::Partition { .. } => FaultKind::Partition,
            Fault::Netem { .. } => FaultKind::Netem,
        }
    }

    /// How long the fault lasts before it is healed.
    pub fn hold_ms(&self) -> u64 {
        match self {
            Fault::Kill { down_ms, .. } => *down_ms,
            Fault::Pause { hold_ms, .. }
            | Fault::Partition { hold_ms, .. }
            | Fault::Netem { hold_ms, .. } => *hold_ms,
        }
    }

    /// Nodes that must get no new transactions while the fault is coming
    /// and held: a node about to be killed loses its mempool, so a tx it
    /// accepted a moment before could never reach anyone. (A paused or cut
    /// off node keeps what it accepted and gossips it after healing.)
    pub fn fenced(&self) -> Vec<usize> {
        match self {
            Fault::Kill { node, .. } => vec![*node],
            _ => Vec::new(),
        }
    }

    /// One line for people, with 1-based node numbers.
    pub fn describe(&self) -> String {
        let list = |nodes: &[usize]| {
            nodes
                .iter()
                .map(|node| format!("node{}", node + 1))
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            Fault::Kill { node, down_ms } => {
                format!("kill -9 node{} for {} ms, restart", node + 1, down_ms)
            }
            Fault::Pause { node, hold_ms } => {
                format!("pause node{} for {} ms", node + 1, hold_ms)
            }
            Fault::Partition { side, hold_ms } => {
                format!(
                    "partition {{{}}} from the rest for {} ms",
                    list(side),
                    hold_ms
                )
            }
            Fault::Netem {
                nodes,
                delay_ms,
                jitter_ms,
                loss_percent,
                hold_ms,
            } => format!(
                "netem {}: delay {delay_ms}±{jitter_ms} ms, loss {loss_percent}% for {hold_ms} ms",
                list(nodes)
            ),
        }
    }
}

/// The fault schedule: `rounds` faults drawn from `kinds` for `n_nodes`
/// nodes. The same arguments always give the same schedule.
pub fn plan(seed: u64, rounds: usize, kinds: &[FaultKind], n_nodes: usize) -> Vec<Fault> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut kinds: Vec<FaultKind> = kinds.to_vec();
    kinds.sort();
    kinds.dedup();
    if kinds.is_empty() || n_nodes == 0 {
        return Vec::new();
    }
    (0..rounds)
        .map(|_| {
            let kind = kinds[rng.gen_range(0..kinds.len())];
            match kind {
                FaultKind::Kill => Fault::Kill {
                    node: rng.gen_range(0..n_nodes),
                    down_ms: rng.gen_range(2_000..=6_000),
                },
                FaultKind::Pause => Fault::Pause {
                    node: rng.gen_range(0..n_nodes),
                    hold_ms: rng.gen_range(3_000..=8_000),
                },
                FaultKind::Partition if n_nodes >= 2 => {
                    let mut nodes: Vec<usize> = (0..n_nodes).collect();
                    nodes.shuffle(&mut rng);
                    let size = rng.gen_range(1..=n_nodes / 2);
                    let mut side: Vec<usize> = nodes[..size].to_vec();
                    side.sort_unstable();
                    Fault::Partition {
                        side,
                        hold_ms: rng.gen_range(6_000..=12_000),
                    }
                }
                // One node cannot be split; hold it still instead.
                FaultKind::Partition => Fault::Pause {
                    node: 0,
                    hold_ms: rng.gen_range(3_000..=8_000),
                },
                FaultKind::Netem => {
                    let mut nodes: Vec<usize> = (0..n_nodes).collect();
                    nodes.shuffle(&mut rng);
                    let count = rng.gen_range(1..=n_nodes);
                    let mut chosen: Vec<usize> = nodes[..count].to_vec();
                    chosen.sort_unstable();
                    Fault::Netem {
                        nodes: chosen,
                        delay_ms: rng.gen_range(20..=250),
                        jitter_ms: rng.gen_range(0..=50),
                        loss_percent: rng.gen_range(0..=10),
                        hold_ms: rng.gen_range(5_000..=10_000),
                    }
                }
            }
        })
        .collect()
}

/// What happened in one round.
#[derive(Clone, Debug, Serialize)]
pub struct RoundReport {
    pub round: usize,
    #[serde(flatten)]
    pub fault: Fault,
    pub description: String,
    /// From healing to the same tip and state digest everywhere; `None`
    /// when that did not happen within the bound.
    pub converge_ms: Option<u64>,
    pub height: Option<u64>,
    /// Invariants found broken in this round.
    pub violations: Vec<String>,
}

/// Latency figures over rounds, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConvergenceSummary {
    pub p50_ms: Option<u64>,
    pub p99_ms: Option<u64>,
    pub max_ms: Option<u64>,
}

impl ConvergenceSummary {
    pub fn from_rounds(rounds: &[RoundReport]) -> ConvergenceSummary {
        let mut times: Vec<u64> = rounds
            .iter()
            .filter_map(|round| round.converge_ms)
            .collect();
        times.sort_unstable();
        ConvergenceSummary {
            p50_ms: percentile(&times, 50.0),
            p99_ms: percentile(&times, 99.0),
            max_ms: times.last().copied(),
        }
    }
}

/// Transactions of the steady load, at the end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TxTally {
    /// Submission attempts, retries included.
    pub submitted: u64,
    /// Distinct transactions a node accepted (202, or 409 `duplicate` for
    /// one already sent).
    pub accepted: u64,
    pub confirmed: u64,
    pub pending: u64,
    /// Accepted, and known to no node at the end.
    pub lost: u64,
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct ChaosReport {
    pub seed: u64,
    pub nodes: Vec<String>,
    pub converge_bound_secs: u64,
    pub rounds: Vec<RoundReport>,
    pub convergence: ConvergenceSummary,
    /// Most blocks any node disconnected in one reorg.
    pub deepest_reorg: u64,
    pub txs: TxTally,
    /// Every broken invariant, each once, in the order found.
    pub violations: Vec<String>,
    pub passed: bool,
    pub wall_secs: f64,
}

impl ChaosReport {
    /// The verdict: no lost tx, no broken invariant, every round converged.
    pub fn judge(&mut self) {
        let mut violations: Vec<String> = Vec::new();
        for round in &self.rounds {
            if round.converge_ms.is_none() {
                violations.push(format!(
                    "round {}: no convergence within {} s",
                    round.round, self.converge_bound_secs
                ));
            }
            for violation in &round.violations {
                violations.push(format!("round {}: {violation}", round.round));
            }
        }
        if self.txs.lost > 0 {
            violations.push(format!("{} accepted txs lost", self.txs.lost));
        }
        for violation in std::mem::take(&mut self.violations) {
            if !violations.contains(&violation) {
                violations.push(violation);
            }
        }
        self.convergence = ConvergenceSummary::from_rounds(&self.rounds);
        self.passed = violations.is_empty();
        self.violations = violations;
    }

    /// The report for people.
    pub fn describe(&self) -> Vec<String> {
        let ms = |value: Option<u64>| value.map_or("-".to_string(), |ms| format!("{ms} ms"));
        let mut lines = vec![format!(
            "chaos: seed {}, {} rounds against {} nodes, convergence bound {} s",
            self.seed,
            self.rounds.len(),
            self.nodes.len(),
            self.converge_bound_secs
        )];
        for round in &self.rounds {
            lines.push(format!(
                "  round {:>2}  {:<60}  converged {}{}",
                round.round,
                round.description,
                ms(round.converge_ms),
                round
                    .height
                    .map(|height| format!(" at height {height}"))
                    .unwrap_or_default()
            ));
        }
        lines.push(format!(
            "convergence after heal: p50 {}  p99 {}  max {}",
            ms(self.convergence.p50_ms),
            ms(self.convergence.p99_ms),
            ms(self.convergence.max_ms)
        ));
        lines.push(format!("deepest reorg: {} blocks", self.deepest_reorg));
        lines.push(format!(
            "txs: submitted {}  accepted {}  confirmed {}  pending {}  lost {}",
            self.txs.submitted,
            self.txs.accepted,
            self.txs.confirmed,
            self.txs.pending,
            self.txs.lost
        ));
        for violation in &self.violations {
            lines.push(format!("VIOLATION: {violation}"));
        }
        lines.push(format!(
            "RESULT: {} ({:.0} s)",
            if self.passed { "PASS" } else { "FAIL" },
            self.wall_secs
        ));
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_names_parse_and_print() {
        for kind in FaultKind::ALL {
            assert_eq!(kind.name().parse::<FaultKind>(), Ok(kind));
        }
        assert!("reboot".parse::<FaultKind>().is_err());
    }

    #[test]
    fn same_seed_same_schedule_and_only_enabled_faults() {
        let kinds = FaultKind::ALL;
        let first = plan(7, 20, &kinds, 4);
        assert_eq!(first.len(), 20);
        assert_eq!(first, plan(7, 20, &kinds, 4));
        assert_ne!(first, plan(8, 20, &kinds, 4));
        // Twenty rounds of four kinds with seed 7 use every kind.
        for kind in kinds {
            assert!(first.iter().any(|fault| fault.kind() == kind), "{kind}");
        }
        let only_kill = plan(3, 10, &[FaultKind::Kill], 4);
        assert!(only_kill
            .iter()
            .all(|fault| fault.kind() == FaultKind::Kill));
    }

    #[test]
    fn targets_are_within_the_network() {
        for seed in 0..50 {
            for fault in plan(seed, 10, &FaultKind::ALL, 5) {
                match fault {
                    Fault::Kill { node, .. } | Fault::Pause { node, .. } => assert!(node < 5),
                    Fault::Partition { side, .. } => {
                        assert!(!side.is_empty() && side.len() <= 2, "{side:?}");
                        assert!(side.iter().all(|node| *node < 5));
                    }
                    Fault::Netem {
                        nodes,
                        loss_percent,
                        ..
                    } => {
                        assert!(!nodes.is_empty() && nodes.iter().all(|node| *node < 5));
                        assert!(loss_percent <= 10);
                    }
                }
            }
        }
        assert!(plan(1, 3, &[], 4).is_empty());
    }

    fn round(converge_ms: Option<u64>, violations: &[&str]) -> RoundReport {
        RoundReport {
            round: 1,
            fault: Fault::Pause {
                node: 0,
                hold_ms: 1,
            },
            description: String::new(),
            converge_ms,
            height: Some(3),
            violations: violations.iter().map(ToString::to_string).collect(),
        }
    }

    fn report(rounds: Vec<RoundReport>, lost: u64) -> ChaosReport {
        ChaosReport {
            seed: 1,
            nodes: vec!["a".into()],
            converge_bound_secs: 60,
            rounds,
            convergence: ConvergenceSummary::default(),
            deepest_reorg: 0,
            txs: TxTally {
                lost,
                ..TxTally::default()
            },
            violations: Vec::new(),
            passed: false,
            wall_secs: 0.0,
        }
    }

    #[test]
    fn verdict_fails_on_loss_violation_or_no_convergence() {
        let mut good = report(vec![round(Some(100), &[]), round(Some(300), &[])], 0);
        good.judge();
        assert!(good.passed, "{:?}", good.violations);
        assert_eq!(good.convergence.max_ms, Some(300));
        let mut lost = report(vec![round(Some(100), &[])], 2);
        lost.judge();
        assert!(!lost.passed);
        let mut stuck = report(vec![round(None, &[])], 0);
        stuck.judge();
        assert!(!stuck.passed);
        assert!(stuck.violations[0].contains("no convergence"));
        let mut broken = report(vec![round(Some(1), &["supply"])], 0);
        broken.judge();
        assert!(!broken.passed);
        assert!(broken
            .describe()
            .last()
            .unwrap()
            .starts_with("RESULT: FAIL"));
    }
}
