//! The node processes of a local testnet (`testnet up`), as `testnet chaos`
//! sees them, and the faults it puts on them. A node is found by the
//! loopback port of its RPC URL: the socket listening there
//! (`/proc/net/tcp`, `/proc/net/tcp6`) and the process holding it
//! (`/proc/<pid>/fd`). Pause is SIGSTOP then SIGCONT. Kill is SIGKILL; the
//! restart is asked of the node's launcher with SIGUSR1, on which
//! `testnet up` starts every node that has exited again with the same data
//! dir and flags, so the restarted node stays its child and is stopped with
//! the rest. Linux only, like the rest of the tool's process handling.
//!
//! Partitions and netem are not offered here: the nodes share one network
//! namespace and one loopback address, and a dialing node's source port is
//! ephemeral, so no packet filter rule can tell which node sent a packet.
//! Those faults need a namespace per node, which the Docker testnet has.

use rustix::process::{Pid, Signal};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// One node process behind a loopback RPC URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalNode {
    pub url: String,
    pub port: u16,
    pub pid: u32,
    /// Its launcher's pid (a `testnet up`, for kill faults).
    pub parent: u32,
    /// Its command line.
    pub argv: Vec<String>,
    /// The directory after `--data-dir`, when given.
    pub data_dir: Option<PathBuf>,
}

impl LocalNode {
    /// The data dir's name (`node3` under `testnet up`), else the pid.
    pub fn name(&self) -> String {
        self.data_dir
            .as_ref()
            .and_then(|dir| dir.file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("pid {}", self.pid))
    }

    /// Whether its parent is a `testnet up`, which restarts it on SIGUSR1.
    pub fn launched_by_testnet_up(&self) -> bool {
        let argv = cmdline(self.parent);
        let is_testnet = argv.first().is_some_and(|program| {
            Path::new(program)
                .file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("testnet"))
        });
        is_testnet && argv.iter().skip(1).any(|arg| arg == "up")
    }

    /// The last lines of its `node.log` (where `testnet up` writes it).
    pub fn log_tail(&self, lines: usize) -> String {
        let Some(dir) = &self.data_dir else {
            return "(no --data-dir, so no log to show)".into();
        };
        match std::fs::read_to_string(dir.join("node.log")) {
            Ok(text) => {
                let all: Vec<&str> = text.lines().collect();
                all[all.len().saturating_sub(lines)..].join("\n")
            }
            Err(error) => format!("(cannot read {}/node.log: {error})", dir.display()),
        }
    }
}

/// The loopback port a URL names, when its host is a loopback name.
pub fn loopback_port(url: &str) -> Option<u16> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next()?;
    let (host, port) = authority.rsplit_once(':')?;
    let loopback = host == "localhost"
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback());
    loopback.then(|| port.parse().ok()).flatten()
}

/// Socket inodes listening on `port`, from one `/proc/net/tcp*` table.
fn listening_inodes(table: &str, port: u16) -> BTreeSet<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let state = fields.get(3)?;
            let inode = fields.get(9)?.parse::<u64>().ok()?;
            let local_port = u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()?;
            (*state == "0A" && local_port == port && inode != 0).then_some(inode)
        })
        .collect()
}

/// The pid of the process listening on TCP `port` in this network
/// namespace, if one of ours can be seen.
pub fn pid_listening_on(port: u16) -> Option<u32> {
    let mut inodes = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(listening_inodes(&text, port));
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let wanted: BTreeSet<String> = inodes
        .iter()
        .map(|inode| format!("socket:[{inode}]"))
        .collect();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                if wanted.contains(target.to_string_lossy().as_ref()) {
                    return Some(pid);
                }
            }
        }
    }
    None
}

/// A process's command line (empty when it is gone).
fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| {
            bytes
                .split(|byte| *byte == 0)
                .filter(|arg| !arg.is_empty())
                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A process's parent pid, from `/proc/<pid>/stat` (the field after the
/// parenthesised name, which may itself hold spaces).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// The node process serving `url`, or why none can be used.
pub fn behind_url(url: &str) -> Result<LocalNode, String> {
    let port = loopback_port(url).ok_or_else(|| format!("{url} is not a loopback URL"))?;
    let pid =
        pid_listening_on(port).ok_or_else(|| format!("no local process listens on port {port}"))?;
    let argv = cmdline(pid);
    let program = argv.first().cloned().unwrap_or_default();
    if program.ends_with("docker-proxy") {
        return Err(format!("port {port} is a Docker published port"));
    }
    let data_dir = argv
        .iter()
        .position(|arg| arg == "--data-dir")
        .and_then(|index| argv.get(index + 1))
        .map(PathBuf::from);
    Ok(LocalNode {
        url: url.to_string(),
        port,
        pid,
        parent: parent_of(pid).unwrap_or(0),
        argv,
        data_dir,
    })
}

/// Every URL's node process, or `Err` naming the first that is not one.
pub fn behind_urls(urls: &[String]) -> Result<Vec<LocalNode>, String> {
    urls.iter()
        .map(|url| behind_url(url).map_err(|why| format!("{url}: {why}")))
        .collect()
}

/// Sends `signal` to `pid`.
pub fn signal(pid: u32, signal: Signal) -> Result<(), String> {
    let target = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| format!("{pid} is not a process id"))?;
    rustix::process::kill_process(target, signal)
        .map_err(|error| format!("cannot signal pid {pid}: {error}"))
}

/// SIGKILL, the `kill -9` of a kill fault.
pub fn kill(node: &LocalNode) -> Result<(), String> {
    signal(node.pid, Signal::KILL)
}

/// SIGSTOP: the process stops, its sockets stay open.
pub fn pause(node: &LocalNode) -> Result<(), String> {
    signal(node.pid, Signal::STOP)
}

pub fn resume(node: &LocalNode) -> Result<(), String> {
    signal(node.pid, Signal::CONT)
}

/// Asks the node's launcher (`testnet up`) to start its exited nodes again.
pub fn request_restart(node: &LocalNode) -> Result<(), String> {
    signal(node.parent, Signal::USR1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_give_their_port() {
        assert_eq!(loopback_port("http://127.0.0.1:8081"), Some(8081));
        assert_eq!(loopback_port("http://localhost:9000/v1"), Some(9000));
        assert_eq!(loopback_port("http://[::1]:8082"), Some(8082));
        assert_eq!(loopback_port("http://10.0.0.2:8080"), None);
        assert_eq!(loopback_port("http://127.0.0.1"), None);
    }

    #[test]
    fn listening_sockets_are_read_from_the_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F91 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 4243 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1F92 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4244 1 0000000000000000 100 0 0 10 0
";
        assert_eq!(listening_inodes(table, 8081), BTreeSet::from([4242]));
        assert!(listening_inodes(table, 8083).is_empty());
    }

    /// This test's own listener is found, with this process's pid and
    /// parent and its command line.
    #[test]
    fn the_process_behind_a_loopback_url_is_found() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let node = behind_url(&format!("http://127.0.0.1:{port}")).unwrap();
        assert_eq!(node.pid, std::process::id());
        assert_eq!(node.port, port);
        assert_eq!(
            Some(node.parent),
            rustix::process::getppid().map(|pid| pid.as_raw_nonzero().get() as u32)
        );
        assert!(!node.argv.is_empty());
        assert!(!node.launched_by_testnet_up());
        drop(listener);
        assert!(behind_url(&format!("http://127.0.0.1:{port}")).is_err());
    }
}
