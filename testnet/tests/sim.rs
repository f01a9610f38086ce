//! `testnet sim` end to end, on small networks that run in seconds:
//! the same seed gives the same report and tip, a partition heals with no
//! tx lost, and bad flags get a one-line error.

use std::process::Command;
use std::time::Duration;
use testnet::sim::options::{Latency, Partition, SimOptions, Topology};

fn small(seed: u64) -> SimOptions {
    SimOptions {
        nodes: 30,
        degree: 4,
        topology: Topology::Random,
        latency: Latency::Uniform(Duration::from_millis(10), Duration::from_millis(80)),
        miners: testnet::sim::options::equal_shares(4),
        block_time: Duration::from_secs(5),
        tx_rate: 4.0,
        duration: Duration::from_secs(120),
        seed,
        ..SimOptions::default()
    }
}

/// The report as JSON without the wall-clock keys.
fn without_wall(report: &testnet::sim::Report) -> String {
    let mut value = serde_json::to_value(report).expect("serializes");
    let object = value.as_object_mut().expect("an object");
    object.retain(|key, _| !key.starts_with("wall_"));
    serde_json::to_string_pretty(&value).expect("serializes")
}

#[test]
fn the_same_seed_gives_a_byte_identical_report_and_tip() {
    let first = testnet::sim::run(small(7), None).expect("runs");
    let second = testnet::sim::run(small(7), None).expect("runs");
    assert_eq!(without_wall(&first.report), without_wall(&second.report));
    assert_eq!(first.report.final_tip, second.report.final_tip);
    // The run did something worth comparing.
    assert!(first.report.blocks_mined >= 5, "{}", first.report.table());
    assert!(
        first.report.txs_submitted >= 100,
        "{}",
        first.report.table()
    );
    assert_eq!(first.report.txs_lost, 0, "{}", first.report.table());
    // And another seed gives another run.
    let other = testnet::sim::run(small(8), None).expect("runs");
    assert_ne!(first.report.final_tip, other.report.final_tip);
}

#[test]
fn a_healed_partition_converges_and_loses_no_tx() {
    let options = SimOptions {
        duration: Duration::from_secs(600),
        partition: Some(Partition {
            at: Duration::from_secs(60),
            duration: Duration::from_secs(300),
            split: 0.5,
        }),
        ..small(3)
    };
    let report = testnet::sim::run(options, None).expect("runs").report;
    let table = report.table();
    assert!(report.frames_dropped_partition > 0, "{table}");
    // Both sides mined on their own, so one side's blocks went stale.
    assert!(
        report.stale_blocks > 0 && report.deepest_reorg > 0,
        "{table}"
    );
    let partition = report.partition.as_ref().expect("a partition ran");
    assert!(partition.time_to_one_tip_ms.is_some(), "{table}");
    assert_eq!(report.txs_lost, 0, "{table}");
    assert_eq!(report.nodes_on_final_tip, report.nodes, "{table}");
}

fn testnet_sim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_testnet"))
        .arg("sim")
        .args(args)
        .output()
        .expect("testnet runs")
}

#[test]
fn bad_flags_get_a_one_line_error() {
    for (args, expected) in [
        (&["--duration", "10"][..], "needs a unit"),
        (&["--latency", "200ms..20ms"][..], "low bound"),
        (&["--loss", "2"][..], "below 1"),
        (&["--partition", "at=1m,split=0.5"][..], "for= is missing"),
        (&["--topology", "star"][..], "expected random"),
        (&["--nodes", "4", "--degree", "4"][..], "--degree must be"),
        (&["--bandwidth", "fast"][..], "is not a number"),
    ] {
        let output = testnet_sim(args);
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn the_command_prints_json_without_a_progress_bar() {
    let output = testnet_sim(&[
        "--nodes",
        "10",
        "--degree",
        "3",
        "--duration",
        "30s",
        "--block-time",
        "5s",
        "--json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the whole stdout is JSON");
    assert_eq!(report["nodes"], 10);
    assert!(output.stderr.is_empty());
}
