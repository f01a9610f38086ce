//! `testnet sim` end to end, on small networks that run in seconds:
//! the same seed gives the same report, tip and trace, a partition heals
//! with no tx lost, killed nodes leave the rest converging, region latency
//! runs, and bad flags get a one-line error.

use std::io::Write;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testnet::sim::options::{Kill, KillCount, Latency, Partition, SimOptions, Topology};
use testnet::sim::regions::RegionMatrix;

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
fn announcement_rounds_are_reproducible_and_batch_the_invs() {
    let rounds = |seed| SimOptions {
        tx_trickle: Duration::from_secs(1),
        ..small(seed)
    };
    let first = testnet::sim::run(rounds(7), None).expect("runs");
    let second = testnet::sim::run(rounds(7), None).expect("runs");
    assert_eq!(without_wall(&first.report), without_wall(&second.report));
    assert_eq!(first.report.txs_lost, 0, "{}", first.report.table());
    // The same network announcing at once sends more `Inv` messages for
    // the same txs: rounds put several txs in one.
    let at_once = testnet::sim::run(small(7), None).expect("runs");
    let invs = |report: &testnet::sim::Report| {
        let value = serde_json::to_value(report).expect("serializes");
        let traffic = value["traffic"].as_array().expect("traffic by kind");
        traffic
            .iter()
            .find(|kind| kind["kind"] == "inv")
            .and_then(|kind| kind["messages"].as_f64())
            .unwrap_or_else(|| panic!("no inv traffic: {traffic:?}"))
    };
    assert!(
        invs(&first.report) * 2.0 < invs(&at_once.report),
        "rounds {} against at once {}",
        invs(&first.report),
        invs(&at_once.report)
    );
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

/// A trace sink the test reads back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("not poisoned")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn traced(options: SimOptions) -> (testnet::sim::Outcome, Vec<u8>) {
    let sink = Captured::default();
    let outcome = testnet::sim::World::new(options)
        .expect("valid options")
        .with_trace(Box::new(sink.clone()))
        .run(None);
    let bytes = sink.0.lock().expect("not poisoned").clone();
    (outcome, bytes)
}

#[test]
fn the_same_seed_writes_the_same_trace_and_tracing_changes_nothing() {
    let short = SimOptions {
        nodes: 12,
        duration: Duration::from_secs(40),
        ..small(5)
    };
    let (first, first_trace) = traced(short.clone());
    let (second, second_trace) = traced(short.clone());
    assert!(first_trace == second_trace, "the traces differ");
    let lines = first.trace.expect("the trace was written");
    let text = String::from_utf8(first_trace).expect("UTF-8");
    assert_eq!(text.lines().count() as u64, lines);
    let mut mined = 0;
    let mut last_t = 0;
    for line in text.lines() {
        let value: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
        let t = value["t_ns"].as_u64().expect("a time");
        assert!(t >= last_t, "out of order: {line}");
        last_t = t;
        if value["event"] == "mined" {
            mined += 1;
        }
    }
    assert_eq!(mined, first.report.blocks_mined);
    assert!(text.contains("\"event\":\"send\""));
    // Tracing observes; it does not change the run.
    let untraced = testnet::sim::run(short, None).expect("runs");
    assert_eq!(without_wall(&untraced.report), without_wall(&first.report));
    assert_eq!(without_wall(&second.report), without_wall(&first.report));
}

#[test]
fn killed_nodes_leave_the_rest_on_one_tip() {
    let options = SimOptions {
        nodes: 40,
        duration: Duration::from_secs(240),
        kill: Some(Kill {
            at: Duration::from_secs(60),
            nodes: KillCount::Fraction(0.25),
        }),
        ..small(11)
    };
    let report = testnet::sim::run(options, None).expect("runs").report;
    let table = report.table();
    assert_eq!(report.nodes_killed, 10, "{table}");
    assert_eq!(report.txs_lost, 0, "{table}");
    // Every living node ends on the final tip; the dead ones are not
    // counted against it, and blocks after the kill still reach "all".
    assert_eq!(report.nodes_on_final_tip, 30, "{table}");
    assert!(report.block_to_100pct.items > 0, "{table}");
    assert!(table.contains("killed: 10 nodes"), "{table}");
}

#[test]
fn region_latency_runs_and_slows_propagation_against_a_fast_lan() {
    let lan = SimOptions {
        latency: Latency::Fixed(Duration::from_millis(1)),
        ..small(4)
    };
    let world = SimOptions {
        latency: Latency::Regions(RegionMatrix::world()),
        ..small(4)
    };
    let lan = testnet::sim::run(lan, None).expect("runs").report;
    let world = testnet::sim::run(world, None).expect("runs").report;
    let p50 = |report: &testnet::sim::Report| report.block_to_90pct.p50_ms.expect("blocks spread");
    assert!(
        p50(&world) > p50(&lan),
        "{}\n{}",
        world.table(),
        lan.table()
    );
    assert_eq!(world.txs_lost, 0, "{}", world.table());
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
        (&["--kill", "at=1m"][..], "nodes= is missing"),
        (&["--miners", "0"][..], "at least 1"),
        (&["--latency", "regions:/nonexistent.json"][..], "reading"),
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
        "--miners",
        "0.7,0.3",
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

#[test]
fn the_command_writes_a_trace_file() {
    let dir = std::env::temp_dir().join(format!("sim-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("trace.jsonl");
    let path_text = path.to_str().expect("UTF-8 path");
    let args = [
        "--nodes",
        "8",
        "--degree",
        "3",
        "--duration",
        "20s",
        "--block-time",
        "5s",
        "--latency",
        "regions",
        "--trace",
        path_text,
        "--json",
    ];
    let output = testnet_sim(&args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let first = std::fs::read(&path).expect("the trace exists");
    assert!(!first.is_empty());
    let again = testnet_sim(&args);
    assert!(again.status.success());
    assert!(
        std::fs::read(&path).expect("rewritten") == first,
        "the traces differ"
    );
    let bad = testnet_sim(&[
        "--nodes",
        "8",
        "--degree",
        "3",
        "--trace",
        "/nonexistent/dir/t",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("creating the trace file"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hops_on_a_ring_are_the_distances_from_the_miner() {
    let options = SimOptions {
        nodes: 6,
        degree: 1,
        topology: Topology::Ring,
        latency: Latency::Fixed(Duration::from_millis(10)),
        miners: testnet::sim::options::equal_shares(1),
        tx_rate: 1.0,
        duration: Duration::from_secs(60),
        ..small(2)
    };
    let report = testnet::sim::run(options, None).expect("runs").report;
    let blocks = report.blocks_mined;
    assert!(blocks >= 5, "{}", report.table());
    // Node 0 mines; the ring carries each block both ways, so nodes 1 and
    // 5 are one hop away, 2 and 4 two, and 3 three. A link on which the
    // receiver has not asked for compact blocks pushed (high-bandwidth
    // mode) costs an announce round trip, three latencies instead of one,
    // so a block can come the long way round (as on the real loopback
    // ring, BENCHMARKS.md): never in fewer hops than the distance.
    let table = report.table();
    let hops = &report.block_hops;
    assert_eq!(hops.iter().sum::<u64>(), 6 * blocks, "{table}");
    assert_eq!(hops[0], blocks, "{table}");
    assert_eq!(hops[1], 2 * blocks, "{table}");
    let at_least_two: u64 = hops.iter().skip(2).sum();
    assert_eq!(at_least_two, 3 * blocks, "{table}");
    let mean = report.block_hops_mean.expect("blocks were relayed");
    assert!((1.8..2.2).contains(&mean), "{table}");
}
