//! End-to-end tests of the `testnet` binary as real processes on loopback:
//! `testnet up` starts a 3-node regtest testnet, blocks are mined over RPC,
//! a transfer goes through `testnet wallet`, `testnet load` runs briefly,
//! `testnet check` sees convergence, and SIGINT stops everything without
//! leaving a node process behind. A second test kills the launcher with
//! SIGKILL and expects its nodes to follow it (parent-death signal).
//!
//! Ports: `up` uses fixed offsets from a base, so each test picks bases
//! from the test process id and probes them, to avoid colliding with other
//! test runs on the same machine.

use rustix::process::{Pid, Signal};
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use testnet::process::process_alive;

const TESTNET: &str = env!("CARGO_BIN_EXE_testnet");

/// Kills the launcher if a test fails half-way; its nodes then die with it.
struct Launcher {
    child: Child,
    stdout_lines: mpsc::Receiver<String>,
    stderr_path: std::path::PathBuf,
}

impl Drop for Launcher {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Launcher {
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Reads stdout until the banner's last line; returns the banner.
    fn wait_banner(&mut self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut banner = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout_lines.recv_timeout(left) {
                Ok(line) => {
                    banner.push_str(&line);
                    banner.push('\n');
                    if line.contains("Press Ctrl-C") {
                        return banner;
                    }
                }
                Err(_) => panic!(
                    "no banner within {timeout:?}; stdout so far:\n{banner}\nstderr:\n{}",
                    self.stderr()
                ),
            }
        }
    }

    fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for testnet up") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "testnet up did not exit within {timeout:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Finds P2P and RPC bases whose `nodes` ports are all free, starting from
/// a spot derived from the process id and `salt`.
fn free_bases(nodes: u16, salt: u16) -> (u16, u16) {
    let pid_spot = (std::process::id() % 500) as u16;
    for attempt in 0..200u16 {
        let base = 20_000 + ((pid_spot * 7 + salt * 131 + attempt * 17) % 1_200) * 16;
        let (p2p_base, rpc_base) = (base, base + 8);
        let all_free = (1..=nodes).all(|index| {
            TcpListener::bind(("127.0.0.1", p2p_base + index)).is_ok()
                && TcpListener::bind(("127.0.0.1", rpc_base + index)).is_ok()
        });
        if all_free {
            return (p2p_base, rpc_base);
        }
    }
    panic!("no free port range found");
}

fn start_up(data_dir: &Path, nodes: u16, miners: u16, salt: u16) -> (Launcher, Vec<String>) {
    start_up_on(data_dir, &["--chain", "regtest"], nodes, miners, salt)
}

fn start_up_on(
    data_dir: &Path,
    chain_args: &[&str],
    nodes: u16,
    miners: u16,
    salt: u16,
) -> (Launcher, Vec<String>) {
    let (p2p_base, rpc_base) = free_bases(nodes, salt);
    let stderr_path = data_dir.join("up.stderr");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let mut child = Command::new(TESTNET)
        .args(["up", "--fresh", "--log", "info"])
        .args(chain_args)
        .args([
            "--nodes",
            &nodes.to_string(),
            "--miners",
            &miners.to_string(),
        ])
        .args([
            "--p2p-base",
            &p2p_base.to_string(),
            "--rpc-base",
            &rpc_base.to_string(),
        ])
        .arg("--data-dir")
        .arg(data_dir.join("net"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("start testnet up");
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, stdout_lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let urls = (1..=nodes)
        .map(|index| format!("http://127.0.0.1:{}", rpc_base + index))
        .collect();
    (
        Launcher {
            child,
            stdout_lines,
            stderr_path,
        },
        urls,
    )
}

/// The node pids the banner lists (`pid 1234` on each node's line).
fn banner_pids(banner: &str) -> Vec<u32> {
    banner
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|word| *word == "pid")?;
            words.next()?.parse().ok()
        })
        .collect()
}

/// Processes whose command line mentions `needle` (our data dir).
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(mut file) = std::fs::File::open(entry.path().join("cmdline")) else {
            continue;
        };
        let mut cmdline = Vec::new();
        if file.read_to_end(&mut cmdline).is_ok()
            && String::from_utf8_lossy(&cmdline).contains(needle)
            && process_alive(pid)
        {
            found.push(pid);
        }
    }
    found
}

fn wait_until_gone(pids: &[u32], data_dir: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let needle = data_dir.join("net").display().to_string();
    loop {
        let alive: Vec<u32> = pids
            .iter()
            .copied()
            .filter(|&pid| process_alive(pid))
            .collect();
        let mentioning = processes_mentioning(&needle);
        if alive.is_empty() && mentioning.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node processes still alive: {alive:?} {mentioning:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn testnet(args: &[&str]) -> Output {
    // The wallet pins each URL's genesis in its keystore: keep it away
    // from the user's own, where another run may have pinned these ports
    // to another chain.
    let keystore = std::env::temp_dir().join(format!("testnet-up-keystore-{}", std::process::id()));
    Command::new(TESTNET)
        .args(args)
        .env("LEDGER_KEYSTORE", keystore)
        .stdin(Stdio::null())
        .output()
        .expect("run testnet")
}

fn describe(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn up_mine_send_load_check_and_stop_with_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let (mut launcher, urls) = start_up(dir.path(), 3, 1, 1);
    let banner = launcher.wait_banner(Duration::from_secs(180));
    let pids = banner_pids(&banner);
    assert_eq!(pids.len(), 3, "banner:\n{banner}");
    assert!(
        banner.contains("WARNING: these dev keys are public"),
        "{banner}"
    );
    for url in &urls {
        assert!(
            banner.contains(url.as_str()),
            "{url} not in banner:\n{banner}"
        );
    }
    assert!(dir.path().join("net/node2/node.log").exists());

    // Mine on a node that does not mine by itself; gossip carries the blocks.
    let http = reqwest::blocking::Client::new();
    let mined: ledger::json::MineResponse = http
        .post(format!("{}/v1/dev/mine", urls[1]))
        .json(&ledger::json::MineRequest { blocks: 3 })
        .send()
        .and_then(|response| response.error_for_status())
        .and_then(|response| response.json())
        .expect("mine on node2");
    assert_eq!(mined.hashes.len(), 3);

    // The wallet, run through `testnet wallet`, pays dev:7 on node1.
    let send = testnet(&[
        "wallet",
        "--rpc-url",
        &urls[0],
        "--json",
        "send",
        "--from",
        "dev:0",
        "--to",
        "dev:7",
        "--amount",
        "1.5",
    ]);
    assert!(send.status.success(), "{}", describe(&send));
    http.post(format!("{}/v1/dev/mine", urls[0]))
        .json(&ledger::json::MineRequest { blocks: 1 })
        .send()
        .and_then(|response| response.error_for_status())
        .expect("mine on node1");

    let url_list = urls.join(",");
    let check = testnet(&["check", "--rpc-url", &url_list, "--timeout", "60"]);
    assert!(check.status.success(), "{}", describe(&check));
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("converged: 3 nodes"),
        "{}",
        describe(&check)
    );

    // The payment is visible on node3, which never saw it submitted.
    let dev7 = ledger::chainspec::dev_accounts()[7]
        .address
        .to_bech32("dev");
    let account: ledger::json::AccountJson = http
        .get(format!("{}/v1/accounts/{dev7}", urls[2]))
        .send()
        .and_then(|response| response.json())
        .expect("account on node3");
    assert_eq!(
        account.balance,
        ledger::Amount::from_base_units(1_000_000 * 100_000_000 + 150_000_000)
    );

    // A short load run with derived (funded) senders: nothing may be lost.
    let load = testnet(&[
        "load",
        "--rpc-url",
        &url_list,
        "--tps",
        "40",
        "--duration",
        "3",
        "--senders",
        "12",
        "--json",
        "--drain-timeout",
        "60",
    ]);
    assert!(load.status.success(), "{}", describe(&load));
    let report: serde_json::Value = serde_json::from_slice(&load.stdout)
        .unwrap_or_else(|error| panic!("{error}: {}", describe(&load)));
    assert_eq!(report["lost"], 0, "{report}");
    assert!(report["accepted"].as_u64().unwrap_or(0) > 0, "{report}");
    assert_eq!(report["accepted"], report["confirmed"], "{report}");

    // A node that disagrees (here: one that does not exist) fails the check.
    let (_, dead_rpc) = free_bases(1, 9);
    let dead = format!("http://127.0.0.1:{}", dead_rpc + 1);
    let failing = testnet(&[
        "check",
        "--rpc-url",
        &format!("{},{dead}", urls[0]),
        "--timeout",
        "1",
    ]);
    assert_eq!(failing.status.code(), Some(1), "{}", describe(&failing));
    assert!(
        String::from_utf8_lossy(&failing.stdout).contains("unreachable"),
        "{}",
        describe(&failing)
    );

    // SIGINT stops every node; nothing is left running.
    rustix::process::kill_process(Pid::from_child(&launcher.child), Signal::INT)
        .expect("send SIGINT");
    let status = launcher.wait_exit(Duration::from_secs(60));
    assert!(
        status.success(),
        "testnet up exited with {status}; stderr:\n{}",
        launcher.stderr()
    );
    wait_until_gone(&pids, dir.path(), Duration::from_secs(5));
}

#[test]
fn killing_the_launcher_takes_its_nodes_down() {
    let dir = tempfile::tempdir().unwrap();
    let (mut launcher, _urls) = start_up(dir.path(), 2, 0, 2);
    let banner = launcher.wait_banner(Duration::from_secs(180));
    let pids = banner_pids(&banner);
    assert_eq!(pids.len(), 2, "banner:\n{banner}");
    // SIGKILL: the launcher runs no cleanup; the kernel's parent-death
    // signal (SIGTERM) must stop the nodes.
    launcher.child.kill().expect("kill testnet up");
    launcher.wait_exit(Duration::from_secs(10));
    wait_until_gone(&pids, dir.path(), Duration::from_secs(30));
}

/// Offered three times what the chain can confirm, the testnet refuses the
/// excess at admission (429 `busy`, counted by the load generator) and
/// confirms every tx it accepted on every node: nothing answered 202 is
/// lost.
#[test]
fn overload_is_refused_at_admission_and_nothing_accepted_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    // Blocks of 16 KiB every second: about 100 transfers a second.
    let mut spec = ledger::ChainSpec::builtin("regtest").unwrap();
    spec.name = "overload".into();
    spec.max_block_bytes = 16 * 1024;
    spec.block_time_ms = 1_000;
    let chain_file = dir.path().join("overload.json");
    std::fs::write(&chain_file, serde_json::to_string(&spec).unwrap()).unwrap();
    let chain = chain_file.to_str().unwrap();
    let miner = spec.format_address(&ledger::chainspec::dev_accounts()[0].address);
    let (mut launcher, urls) = start_up_on(
        dir.path(),
        &["--chain", chain, "--miner-address", &miner],
        4,
        1,
        3,
    );
    launcher.wait_banner(Duration::from_secs(180));
    let load = testnet(&[
        "load",
        "--rpc-url",
        &urls.join(","),
        "--chain",
        chain,
        "--tps",
        "300",
        "--duration",
        "15",
        "--json",
        "--drain-timeout",
        "120",
    ]);
    assert!(load.status.success(), "{}", describe(&load));
    let report: serde_json::Value = serde_json::from_slice(&load.stdout)
        .unwrap_or_else(|error| panic!("{error}: {}", describe(&load)));
    println!(
        "FIGURE overload: offered 300 tx/s for 15 s to a ~100 tx/s chain: {} accepted, {} confirmed, {} lost, refused {}",
        report["accepted"], report["confirmed"], report["lost"], report["rejected"]
    );
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["accepted"], report["confirmed"], "{report}");
    assert!(
        report["rejected"]["busy"].as_u64().unwrap_or(0) > 0,
        "the excess is refused at admission: {report}"
    );
}

/// `testnet chaos` against `testnet up`'s processes: kill -9 (the launcher
/// restarts the node on SIGUSR1, same data dir and flags) and pause
/// (SIGSTOP/SIGCONT) rounds under a steady load; every round converges,
/// supply holds and no accepted tx is lost. Partitions are refused up
/// front, with the reason. Afterwards SIGINT still stops every node, the
/// restarted ones included.
#[test]
fn chaos_kill_and_pause_rounds_against_local_nodes_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut launcher, urls) = start_up(dir.path(), 3, 1, 4);
    let banner = launcher.wait_banner(Duration::from_secs(180));
    let pids = banner_pids(&banner);
    let url_list = urls.join(",");

    let refused = testnet(&["chaos", "--rpc-url", &url_list, "--faults", "partition"]);
    assert_eq!(refused.status.code(), Some(1), "{}", describe(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("network namespace per node"),
        "{}",
        describe(&refused)
    );

    // Seed 3 over kill and pause draws both kinds in three rounds.
    let chaos = testnet(&[
        "chaos",
        "--rpc-url",
        &url_list,
        "--rounds",
        "3",
        "--seed",
        "3",
        "--tps",
        "8",
        "--converge-timeout",
        "90",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&chaos.stdout)
        .unwrap_or_else(|error| panic!("{error}: {}", describe(&chaos)));
    assert!(chaos.status.success(), "{}", describe(&chaos));
    assert_eq!(report["passed"], true, "{report}");
    let rounds = report["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 3, "{report}");
    for kind in ["kill", "pause"] {
        assert!(
            rounds.iter().any(|round| round["fault"] == kind),
            "no {kind} round: {report}"
        );
    }
    assert!(rounds.iter().all(|round| round["converge_ms"].is_u64()));
    assert_eq!(report["txs"]["lost"], 0, "{report}");
    assert!(
        report["txs"]["accepted"].as_u64().unwrap_or(0) > 0,
        "{report}"
    );
    assert!(
        launcher.stderr().contains("started again"),
        "{}",
        launcher.stderr()
    );

    rustix::process::kill_process(Pid::from_child(&launcher.child), Signal::INT)
        .expect("send SIGINT");
    let status = launcher.wait_exit(Duration::from_secs(60));
    assert!(
        status.success(),
        "testnet up exited with {status}; stderr:\n{}",
        launcher.stderr()
    );
    wait_until_gone(&pids, dir.path(), Duration::from_secs(10));
}
