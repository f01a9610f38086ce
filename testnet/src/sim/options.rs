//! The simulator's validated settings and the parsers for their text forms
//! (durations, latency distributions, rates, fault scripts). Each parser
//! returns a one-line error naming what was wrong; nothing downstream
//! reads raw flags.

use super::regions::RegionMatrix;
use std::time::Duration;

/// How nodes pick the peers they dial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// Each node dials `degree` distinct nodes drawn at random.
    Random,
    /// Node i dials i+1 ... i+degree (mod n).
    Ring,
    /// Node i dials i+1 ... i+degree, with no wrap-around: the longest path.
    Line,
    /// Ten clusters (fewer for small networks): all but one outbound
    /// connection stay in the node's cluster, the last goes to another one.
    Clusters,
}

/// One-way latency of a connection, drawn when it is established.
#[derive(Clone, Debug, PartialEq)]
pub enum Latency {
    Fixed(Duration),
    /// Uniform between the two bounds (inclusive).
    Uniform(Duration, Duration),
    /// Uniform within the range between the two nodes' regions.
    Regions(RegionMatrix),
}

impl Latency {
    /// The largest value it can take.
    pub fn max(&self) -> Duration {
        match self {
            Latency::Fixed(value) => *value,
            Latency::Uniform(_, high) => *high,
            Latency::Regions(matrix) => matrix.max(),
        }
    }
}

/// `--partition at=10m,for=5m,split=0.5`: nodes below `split * n` cannot
/// reach the others from `at` to `at + for`.
#[derive(Clone, Debug, PartialEq)]
pub struct Partition {
    pub at: Duration,
    pub duration: Duration,
    pub split: f64,
}

/// `--churn every=1m,down=2m`: every `every`, one node drawn at random
/// leaves the network (its connections close, nothing reaches it) for
/// `down`, then comes back and dials its peers again.
#[derive(Clone, Debug, PartialEq)]
pub struct Churn {
    pub every: Duration,
    pub down: Duration,
}

/// `--kill at=10m,nodes=100` (or `nodes=0.1`, a fraction): at `at`, that
/// many nodes drawn at random leave for good, their hash power with them.
#[derive(Clone, Debug, PartialEq)]
pub struct Kill {
    pub at: Duration,
    pub nodes: KillCount,
}

/// How many nodes `--kill` takes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KillCount {
    Count(usize),
    Fraction(f64),
}

impl KillCount {
    /// The count out of `n` nodes.
    pub fn of(self, n: usize) -> usize {
        match self {
            KillCount::Count(count) => count,
            KillCount::Fraction(fraction) => (n as f64 * fraction).round() as usize,
        }
    }
}

/// The longest mean tx announcement interval: a round may wait eight
/// times the mean, and a tx announced minutes late says nothing more.
const MAX_TX_TRICKLE: Duration = Duration::from_secs(60);

/// Everything a simulation run needs. `Default` gives the documented
/// defaults of `testnet sim`.
#[derive(Clone, Debug, PartialEq)]
pub struct SimOptions {
    pub nodes: usize,
    /// Outbound connections per node.
    pub degree: usize,
    pub topology: Topology,
    pub latency: Latency,
    /// Upload bandwidth of each node, in bytes per second.
    pub bandwidth: u64,
    /// Fraction of messages lost.
    pub loss: f64,
    pub block_time: Duration,
    /// Hash power shares of the miners (nodes 0, 1, ...), summing to 1.
    pub miners: Vec<f64>,
    /// Transactions per second, across the network.
    pub tx_rate: f64,
    /// The nodes' mean interval between tx announcement rounds
    /// (`P2pTiming::tx_announce_interval`); zero announces at once.
    pub tx_trickle: Duration,
    pub duration: Duration,
    pub seed: u64,
    pub partition: Option<Partition>,
    pub churn: Option<Churn>,
    pub kill: Option<Kill>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            nodes: 1000,
            degree: 8,
            topology: Topology::Random,
            latency: Latency::Uniform(Duration::from_millis(20), Duration::from_millis(150)),
            bandwidth: 100_000_000 / 8,
            loss: 0.0,
            block_time: Duration::from_secs(10),
            miners: equal_shares(10),
            tx_rate: 1.0,
            tx_trickle: Duration::ZERO,
            duration: Duration::from_secs(3600),
            seed: 1,
            partition: None,
            churn: None,
            kill: None,
        }
    }
}

impl SimOptions {
    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<(), String> {
        if self.nodes < 2 {
            return Err(format!("--nodes must be at least 2, got {}", self.nodes));
        }
        if self.degree == 0 || self.degree >= self.nodes {
            return Err(format!(
                "--degree must be between 1 and nodes - 1 ({}), got {}",
                self.nodes - 1,
                self.degree
            ));
        }
        if self.miners.len() > self.nodes {
            return Err(format!(
                "--miners names {} miners but there are only {} nodes",
                self.miners.len(),
                self.nodes
            ));
        }
        if self.duration.is_zero() {
            return Err("--duration must be more than 0".into());
        }
        if self.block_time.is_zero() {
            return Err("--block-time must be more than 0".into());
        }
        if self.tx_trickle > MAX_TX_TRICKLE {
            return Err(format!(
                "--tx-trickle must be at most {}s, got {:?}",
                MAX_TX_TRICKLE.as_secs(),
                self.tx_trickle
            ));
        }
        if let Some(partition) = &self.partition {
            let first = (self.nodes as f64 * partition.split).round() as usize;
            if first == 0 || first >= self.nodes {
                return Err(format!(
                    "--partition split={} leaves one side empty with {} nodes",
                    partition.split, self.nodes
                ));
            }
        }
        if let Some(kill) = &self.kill {
            let count = kill.nodes.of(self.nodes);
            if count == 0 || count >= self.nodes {
                return Err(format!(
                    "--kill nodes= must leave at least one of {} nodes and take at least one, got {count}",
                    self.nodes
                ));
            }
        }
        Ok(())
    }
}

/// `n` equal hash power shares.
pub fn equal_shares(n: usize) -> Vec<f64> {
    vec![1.0 / n as f64; n]
}

/// A duration with a unit: `250ms`, `10s`, `5m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("duration {text:?} needs a unit: ms, s, m or h"))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("duration {text:?}: {number:?} is not a number"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("duration {text:?}: unit must be ms, s, m or h")),
    };
    if !seconds.is_finite() || !(0.0..=1e9).contains(&seconds) {
        return Err(format!("duration {text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// `50ms` (fixed), `20ms..200ms` (uniform), `regions` (the built-in world
/// map) or `regions:FILE.json` (a matrix of one's own; see `regions`).
pub fn parse_latency(text: &str) -> Result<Latency, String> {
    if text == "regions" {
        return Ok(Latency::Regions(RegionMatrix::world()));
    }
    if let Some(path) = text.strip_prefix("regions:") {
        let json = std::fs::read_to_string(path)
            .map_err(|error| format!("--latency {text:?}: reading {path}: {error}"))?;
        return RegionMatrix::from_json(&json)
            .map(Latency::Regions)
            .map_err(|error| format!("--latency {text:?}: {error}"));
    }
    match text.split_once("..") {
        Some((low, high)) => {
            let (low, high) = (parse_duration(low)?, parse_duration(high)?);
            if low > high {
                return Err(format!(
                    "latency {text:?}: the low bound is above the high one"
                ));
            }
            Ok(Latency::Uniform(low, high))
        }
        None => Ok(Latency::Fixed(parse_duration(text)?)),
    }
}

/// A rate in bits (`100Mbit`, `1Gbit`, `512kbit`) or bytes (`10MB`, `500KB`)
/// per second; returns bytes per second.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix("/s").unwrap_or(&lower);
    let split = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| {
            format!("bandwidth {text:?} needs a unit: kbit, Mbit, Gbit, KB, MB or GB")
        })?;
    let (number, unit) = lower.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("bandwidth {text:?}: {number:?} is not a number"))?;
    let bytes = match unit {
        "bit" | "bps" => value / 8.0,
        "kbit" | "kbps" => value * 1e3 / 8.0,
        "mbit" | "mbps" => value * 1e6 / 8.0,
        "gbit" | "gbps" => value * 1e9 / 8.0,
        "b" => value,
        "kb" => value * 1e3,
        "mb" => value * 1e6,
        "gb" => value * 1e9,
        _ => {
            return Err(format!(
                "bandwidth {text:?}: unit must be kbit, Mbit, Gbit, KB, MB or GB"
            ))
        }
    };
    if !bytes.is_finite() || !(1.0..=1e12).contains(&bytes) {
        return Err(format!(
            "bandwidth {text:?} is out of range (1 B/s to 1 TB/s)"
        ));
    }
    Ok(bytes as u64)
}

/// A fraction in [0, 1).
pub fn parse_fraction(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("fraction {text:?} is not a number"))?;
    if !(0.0..1.0).contains(&value) {
        return Err(format!("fraction {text:?} must be at least 0 and below 1"));
    }
    Ok(value)
}

/// `K` (K miners with equal shares) or `0.5,0.3,0.2` (one share each,
/// scaled to sum to 1).
pub fn parse_miners(text: &str) -> Result<Vec<f64>, String> {
    if !text.contains(',') && !text.contains('.') {
        let count: usize = text.trim().parse().map_err(|_| {
            format!("--miners {text:?}: expected a count or shares like 0.5,0.3,0.2")
        })?;
        if count == 0 {
            return Err("--miners must be at least 1".into());
        }
        return Ok(equal_shares(count));
    }
    let mut shares = Vec::new();
    for part in text.split(',') {
        let share: f64 = part
            .trim()
            .parse()
            .map_err(|_| format!("--miners {text:?}: share {part:?} is not a number"))?;
        if !share.is_finite() || share <= 0.0 {
            return Err(format!("--miners {text:?}: every share must be above 0"));
        }
        shares.push(share);
    }
    let total: f64 = shares.iter().sum();
    Ok(shares.into_iter().map(|share| share / total).collect())
}

/// A non-negative rate of txs per second.
pub fn parse_tx_rate(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("--tx-rate {text:?} is not a number"))?;
    if !value.is_finite() || !(0.0..=100_000.0).contains(&value) {
        return Err(format!("--tx-rate {text:?} must be between 0 and 100000"));
    }
    Ok(value)
}

/// `random`, `ring`, `line` or `clusters`.
pub fn parse_topology(text: &str) -> Result<Topology, String> {
    match text {
        "random" => Ok(Topology::Random),
        "ring" => Ok(Topology::Ring),
        "line" => Ok(Topology::Line),
        "clusters" => Ok(Topology::Clusters),
        _ => Err(format!(
            "--topology {text:?}: expected random, ring, line or clusters"
        )),
    }
}

/// Splits `key=value,key=value` and checks every key is known and given.
fn key_values<'a>(what: &str, text: &'a str, keys: &[&str]) -> Result<Vec<&'a str>, String> {
    let mut values = vec![None; keys.len()];
    for part in text.split(',') {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("{what} {text:?}: expected {}", keys.join("=..,")))?;
        let index = keys
            .iter()
            .position(|known| *known == key.trim())
            .ok_or_else(|| format!("{what} {text:?}: unknown key {key:?}"))?;
        values[index] = Some(value.trim());
    }
    keys.iter()
        .zip(values)
        .map(|(key, value)| value.ok_or_else(|| format!("{what} {text:?}: {key}= is missing")))
        .collect()
}

/// `at=10m,for=5m,split=0.5`.
pub fn parse_partition(text: &str) -> Result<Partition, String> {
    let values = key_values("--partition", text, &["at", "for", "split"])?;
    let split: f64 = values[2]
        .parse()
        .map_err(|_| format!("--partition {text:?}: split must be a number"))?;
    if !(split > 0.0 && split < 1.0) {
        return Err(format!(
            "--partition {text:?}: split must be between 0 and 1"
        ));
    }
    let duration = parse_duration(values[1])?;
    if duration.is_zero() {
        return Err(format!("--partition {text:?}: for= must be more than 0"));
    }
    Ok(Partition {
        at: parse_duration(values[0])?,
        duration,
        split,
    })
}

/// `every=1m,down=2m`.
pub fn parse_churn(text: &str) -> Result<Churn, String> {
    let values = key_values("--churn", text, &["every", "down"])?;
    let churn = Churn {
        every: parse_duration(values[0])?,
        down: parse_duration(values[1])?,
    };
    if churn.every.is_zero() || churn.down.is_zero() {
        return Err(format!(
            "--churn {text:?}: every= and down= must be more than 0"
        ));
    }
    Ok(churn)
}

/// `at=10m,nodes=100` or `at=10m,nodes=0.1`.
pub fn parse_kill(text: &str) -> Result<Kill, String> {
    let values = key_values("--kill", text, &["at", "nodes"])?;
    let nodes = if values[1].contains('.') {
        let fraction: f64 = values[1]
            .parse()
            .map_err(|_| format!("--kill {text:?}: nodes= must be a count or a fraction"))?;
        if !(fraction > 0.0 && fraction < 1.0) {
            return Err(format!(
                "--kill {text:?}: a fraction of nodes must be between 0 and 1"
            ));
        }
        KillCount::Fraction(fraction)
    } else {
        KillCount::Count(
            values[1]
                .parse()
                .map_err(|_| format!("--kill {text:?}: nodes= must be a count or a fraction"))?,
        )
    };
    Ok(Kill {
        at: parse_duration(values[0])?,
        nodes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_and_refuse_bare_numbers() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("10").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("10d").unwrap_err().contains("unit must be"));
        assert!(parse_duration("x1s").is_err());
    }

    #[test]
    fn latency_rate_and_fractions_parse_and_refuse() {
        assert_eq!(
            parse_latency("20ms..200ms"),
            Ok(Latency::Uniform(
                Duration::from_millis(20),
                Duration::from_millis(200)
            ))
        );
        assert!(parse_latency("200ms..20ms").is_err());
        assert_eq!(parse_rate("100Mbit"), Ok(12_500_000));
        assert_eq!(parse_rate("1MB"), Ok(1_000_000));
        assert!(parse_rate("100 furlongs").is_err());
        assert_eq!(parse_fraction("0.01"), Ok(0.01));
        assert!(parse_fraction("1.5").is_err());
        assert_eq!(parse_miners("4"), Ok(vec![0.25; 4]));
        assert_eq!(parse_miners("3,1"), Ok(vec![0.75, 0.25]));
        assert!(parse_miners("0").is_err());
        assert!(parse_miners("0.5,-1").is_err());
    }

    #[test]
    fn fault_scripts_parse_and_name_what_is_missing() {
        assert_eq!(
            parse_partition("at=10m,for=5m,split=0.5"),
            Ok(Partition {
                at: Duration::from_secs(600),
                duration: Duration::from_secs(300),
                split: 0.5
            })
        );
        assert!(parse_partition("at=10m,split=0.5")
            .unwrap_err()
            .contains("for= is missing"));
        assert!(parse_partition("at=1m,for=1m,split=1").is_err());
        assert!(parse_churn("every=1m,down=2m,x=1")
            .unwrap_err()
            .contains("unknown key"));
        assert_eq!(
            parse_kill("at=10m,nodes=0.25"),
            Ok(Kill {
                at: Duration::from_secs(600),
                nodes: KillCount::Fraction(0.25)
            })
        );
        assert_eq!(
            parse_kill("at=1s,nodes=3").map(|kill| kill.nodes.of(10)),
            Ok(3)
        );
        assert!(parse_kill("at=1s,nodes=1.5").is_err());
        assert!(parse_kill("at=1s")
            .unwrap_err()
            .contains("nodes= is missing"));
        let all = SimOptions {
            nodes: 10,
            kill: Some(parse_kill("at=1s,nodes=10").unwrap()),
            ..SimOptions::default()
        };
        assert!(all.validate().unwrap_err().contains("--kill"));
        assert!(matches!(parse_latency("regions"), Ok(Latency::Regions(_))));
        assert!(parse_latency("regions:/nonexistent.json")
            .unwrap_err()
            .contains("reading"));
    }

    #[test]
    fn defaults_validate_and_bad_combinations_do_not() {
        assert_eq!(SimOptions::default().validate(), Ok(()));
        let options = SimOptions {
            nodes: 4,
            degree: 4,
            ..SimOptions::default()
        };
        assert!(options.validate().unwrap_err().contains("--degree"));
        let slow = SimOptions {
            tx_trickle: Duration::from_secs(61),
            ..SimOptions::default()
        };
        assert!(slow.validate().unwrap_err().contains("--tx-trickle"));
    }
}
