//! The containers of a Docker testnet, as `testnet chaos` sees them, and
//! the faults it puts on them. Everything goes through the `docker` CLI
//! (so it works with any engine the user's CLI talks to) and, for network
//! faults, `nsenter` into a container's network namespace from the host,
//! where `iptables` and `tc` run: the image itself needs no tools (ours is
//! `FROM scratch`). Network faults need root (or passwordless sudo).
//!
//! Finding the containers: a compose project's by its label
//! (`com.docker.compose.project`), or the ones behind given RPC URLs (the
//! container publishing the URL's port, or holding the URL's IP).

use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Output;
use tokio::process::Command;

/// The RPC port inside our containers.
pub const RPC_PORT: u16 = 8080;

/// One running container of the testnet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    /// Its name without the leading slash.
    pub name: String,
    /// The compose service or swarm service it belongs to, if any.
    pub service: Option<String>,
    /// Its IP on each network, by network name.
    pub ips: BTreeMap<String, String>,
    /// The host port its RPC port is published on, if any.
    pub rpc_host_port: Option<u16>,
    /// Its main process's PID on the host (0 when not running).
    pub pid: u32,
    /// `running`, `paused`, `exited`, ...
    pub status: String,
}

impl Container {
    /// The URL that reaches its RPC from this host: the published port on
    /// loopback, else its first IP.
    pub fn rpc_url(&self) -> Option<String> {
        if let Some(port) = self.rpc_host_port {
            return Some(format!("http://127.0.0.1:{port}"));
        }
        self.ips
            .values()
            .next()
            .map(|ip| format!("http://{ip}:{RPC_PORT}"))
    }

    /// Whether `url` (`http://host:port`) reaches this container's RPC.
    pub fn serves(&self, url: &str) -> bool {
        let Some((host, port)) = host_and_port(url) else {
            return false;
        };
        let loopback = matches!(
            host.as_str(),
            "127.0.0.1" | "localhost" | "[::1]" | "0.0.0.0"
        );
        (loopback && self.rpc_host_port == Some(port))
            || (port == RPC_PORT && self.ips.values().any(|ip| *ip == host))
    }
}

/// `http://host:port/...` -> (host, port); port 80 when absent.
fn host_and_port(url: &str) -> Option<(String, u16)> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next()?;
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            Some((host.to_string(), port.parse().ok()?))
        }
        _ => Some((authority.to_string(), 80)),
    }
}

/// Parses the JSON array `docker inspect` prints.
pub fn parse_inspect(json: &str) -> Result<Vec<Container>, String> {
    let value: Value = serde_json::from_str(json).map_err(|error| error.to_string())?;
    let entries = value
        .as_array()
        .ok_or_else(|| "docker inspect did not print an array".to_string())?;
    let mut containers = Vec::new();
    for entry in entries {
        let text = |pointer: &str| {
            entry
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let id = text("/Id").ok_or_else(|| "a container without an Id".to_string())?;
        let name = text("/Name")
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string();
        let labels = entry.pointer("/Config/Labels");
        let label = |key: &str| {
            labels
                .and_then(|labels| labels.get(key))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let service =
            label("com.docker.compose.service").or_else(|| label("com.docker.swarm.service.name"));
        let mut ips = BTreeMap::new();
        if let Some(networks) = entry
            .pointer("/NetworkSettings/Networks")
            .and_then(Value::as_object)
        {
            for (network, settings) in networks {
                if let Some(ip) = settings.get("IPAddress").and_then(Value::as_str) {
                    if !ip.is_empty() {
                        ips.insert(network.clone(), ip.to_string());
                    }
                }
            }
        }
        let rpc_host_port = entry
            .pointer(&format!("/NetworkSettings/Ports/{RPC_PORT}~1tcp"))
            .and_then(Value::as_array)
            .and_then(|bindings| bindings.first())
            .and_then(|binding| binding.get("HostPort"))
            .and_then(Value::as_str)
            .and_then(|port| port.parse().ok());
        let pid = entry
            .pointer("/State/Pid")
            .and_then(Value::as_u64)
            .and_then(|pid| u32::try_from(pid).ok())
            .unwrap_or(0);
        containers.push(Container {
            id,
            name,
            service,
            ips,
            rpc_host_port,
            pid,
            status: text("/State/Status").unwrap_or_default(),
        });
    }
    Ok(containers)
}

/// Runs a command; an error carries its stderr.
async fn run(program: &str, args: &[&str]) -> Result<Output, String> {
    let output = Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|error| format!("cannot run {program}: {error}"))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Runs `docker ARGS`; answers stdout.
pub async fn docker(args: &[&str]) -> Result<String, String> {
    run("docker", args)
        .await
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs a command as root: directly when we are root, else with `sudo -n`.
async fn as_root(args: &[&str]) -> Result<(), String> {
    if rustix::process::geteuid().is_root() {
        run(args[0], &args[1..]).await.map(|_| ())
    } else {
        let mut with_sudo = vec!["-n"];
        with_sudo.extend_from_slice(args);
        run("sudo", &with_sudo).await.map(|_| ())
    }
}

/// Inspects containers by id or name.
pub async fn inspect(ids: &[String]) -> Result<Vec<Container>, String> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = vec!["inspect"];
    args.extend(ids.iter().map(String::as_str));
    parse_inspect(&docker(&args).await?)
}

/// The containers of a compose project, ordered by service name.
pub async fn compose_project(project: &str) -> Result<Vec<Container>, String> {
    let filter = format!("label=com.docker.compose.project={project}");
    let ids: Vec<String> = docker(&["ps", "-aq", "--filter", &filter])
        .await?
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let mut containers = inspect(&ids).await?;
    containers.sort_by(|a, b| (&a.service, &a.name).cmp(&(&b.service, &b.name)));
    Ok(containers)
}

/// The container behind each URL, in the URLs' order.
pub async fn behind_urls(urls: &[String]) -> Result<Vec<Container>, String> {
    let ids: Vec<String> = docker(&["ps", "-q"])
        .await?
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let all = inspect(&ids).await?;
    urls.iter()
        .map(|url| {
            all.iter()
                .find(|container| container.serves(url))
                .cloned()
                .ok_or_else(|| format!("no running container serves {url}"))
        })
        .collect()
}

/// The container's current state (its PID changes on restart).
pub async fn refresh(container: &Container) -> Result<Container, String> {
    inspect(std::slice::from_ref(&container.id))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| format!("container {} is gone", container.name))
}

/// The network interfaces in a container's namespace, loopback excepted.
async fn interfaces(pid: u32) -> Result<Vec<String>, String> {
    let pid = pid.to_string();
    let output = run("nsenter", &["-t", &pid, "-n", "ip", "-o", "link", "show"]).await;
    // Reading links needs no privilege on most hosts, but try as root too.
    let text = match output {
        Ok(output) => String::from_utf8_lossy(&output.stdout).into_owned(),
        Err(_) => {
            let output = Command::new("sudo")
                .args([
                    "-n", "nsenter", "-t", &pid, "-n", "ip", "-o", "link", "show",
                ])
                .output()
                .await
                .map_err(|error| error.to_string())?;
            String::from_utf8_lossy(&output.stdout).into_owned()
        }
    };
    Ok(text
        .lines()
        .filter_map(|line| line.split(':').nth(1))
        .map(|name| name.trim().split('@').next().unwrap_or("").to_string())
        .filter(|name| !name.is_empty() && name != "lo")
        .collect())
}

/// Adds (`-A`) or deletes (`-D`) DROP rules in `container`'s namespace for
/// traffic to and from each of `others`' IPs.
pub async fn drop_traffic(
    action: &str,
    container: &Container,
    others: &[&Container],
) -> Result<(), String> {
    let pid = container.pid.to_string();
    for other in others {
        for ip in other.ips.values() {
            for (chain, direction) in [("INPUT", "-s"), ("OUTPUT", "-d")] {
                as_root(&[
                    "nsenter", "-t", &pid, "-n", "iptables", "-w", action, chain, direction, ip,
                    "-j", "DROP",
                ])
                .await?;
            }
        }
    }
    Ok(())
}

/// How `netem_add` degraded the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Degraded {
    /// `tc netem`: delay, jitter and loss as asked.
    Netem,
    /// The kernel has no `sch_netem` (some VM kernels): loss by an
    /// `iptables` random-drop rule, and delay as queueing behind a `tbf`
    /// rate limit whose latency bound is the asked delay.
    TbfAndDrop,
}

/// `iptables` random-drop probability for a loss in percent.
fn drop_probability(loss_percent: u32) -> String {
    format!("{:.2}", f64::from(loss_percent.min(100)) / 100.0)
}

/// Puts delay, jitter and loss on every interface of `container`: with
/// `tc netem` where the kernel has it, else with the fallback of
/// `Degraded::TbfAndDrop`.
pub async fn netem_add(
    container: &Container,
    delay_ms: u32,
    jitter_ms: u32,
    loss_percent: u32,
) -> Result<Degraded, String> {
    let pid = container.pid.to_string();
    let (delay, jitter, loss) = (
        format!("{delay_ms}ms"),
        format!("{jitter_ms}ms"),
        format!("{loss_percent}%"),
    );
    let interfaces = interfaces(container.pid).await?;
    let mut method = Degraded::Netem;
    for interface in &interfaces {
        let netem = as_root(&[
            "nsenter", "-t", &pid, "-n", "tc", "qdisc", "replace", "dev", interface, "root",
            "netem", "delay", &delay, &jitter, "loss", &loss,
        ])
        .await;
        match netem {
            Ok(()) => {}
            Err(error) if error.contains("unknown") => {
                method = Degraded::TbfAndDrop;
                let latency = format!("{}ms", delay_ms.max(1));
                as_root(&[
                    "nsenter", "-t", &pid, "-n", "tc", "qdisc", "replace", "dev", interface,
                    "root", "tbf", "rate", "512kbit", "burst", "16kbit", "latency", &latency,
                ])
                .await?;
            }
            Err(error) => return Err(error),
        }
    }
    if method == Degraded::TbfAndDrop && loss_percent > 0 {
        let probability = drop_probability(loss_percent);
        for chain in ["INPUT", "OUTPUT"] {
            as_root(&[
                "nsenter",
                "-t",
                &pid,
                "-n",
                "iptables",
                "-w",
                "-A",
                chain,
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &probability,
                "-j",
                "DROP",
            ])
            .await?;
        }
    }
    Ok(method)
}

/// Removes what `netem_add` put on (given the same loss). Interfaces or
/// rules without it are fine.
pub async fn netem_clear(container: &Container, loss_percent: u32) -> Result<(), String> {
    let pid = container.pid.to_string();
    for interface in interfaces(container.pid).await? {
        let _ = as_root(&[
            "nsenter", "-t", &pid, "-n", "tc", "qdisc", "del", "dev", &interface, "root",
        ])
        .await;
    }
    let probability = drop_probability(loss_percent);
    for chain in ["INPUT", "OUTPUT"] {
        // Deletes only the rule the fallback added; absent, it fails quietly.
        let _ = as_root(&[
            "nsenter",
            "-t",
            &pid,
            "-n",
            "iptables",
            "-w",
            "-D",
            chain,
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            &probability,
            "-j",
            "DROP",
        ])
        .await;
    }
    Ok(())
}

/// The last lines of a container's log, for a report.
pub async fn log_tail(container: &Container, lines: usize) -> String {
    let lines = lines.to_string();
    match Command::new("docker")
        .args(["logs", "--tail", &lines, &container.id])
        .output()
        .await
    {
        Ok(output) => {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            text.trim().to_string()
        }
        Err(error) => format!("(no logs: {error})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INSPECT: &str = r#"[{
        "Id": "abc123",
        "Name": "/proj-node1-1",
        "State": {"Status": "running", "Pid": 4242},
        "Config": {"Labels": {"com.docker.compose.service": "node1"}},
        "NetworkSettings": {
            "Ports": {"7070/tcp": null, "8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8081"}]},
            "Networks": {"proj_default": {"IPAddress": "172.20.0.3"}}
        }
    }, {
        "Id": "def456",
        "Name": "/gl_node.3.xyz",
        "State": {"Status": "paused", "Pid": 0},
        "Config": {"Labels": {"com.docker.swarm.service.name": "gl_node"}},
        "NetworkSettings": {"Ports": {}, "Networks": {"gl_net": {"IPAddress": "10.0.1.7"}, "other": {"IPAddress": ""}}}
    }]"#;

    #[test]
    fn inspect_output_is_read() {
        let containers = parse_inspect(INSPECT).unwrap();
        assert_eq!(containers.len(), 2);
        let node1 = &containers[0];
        assert_eq!(node1.name, "proj-node1-1");
        assert_eq!(node1.service.as_deref(), Some("node1"));
        assert_eq!(node1.rpc_host_port, Some(8081));
        assert_eq!(node1.pid, 4242);
        assert_eq!(node1.rpc_url().as_deref(), Some("http://127.0.0.1:8081"));
        let task = &containers[1];
        assert_eq!(task.service.as_deref(), Some("gl_node"));
        assert_eq!(task.status, "paused");
        assert_eq!(task.ips.len(), 1, "empty IPs are skipped");
        assert_eq!(task.rpc_url().as_deref(), Some("http://10.0.1.7:8080"));
        assert!(parse_inspect("{}").is_err());
    }

    #[test]
    fn urls_map_to_the_container_serving_them() {
        let containers = parse_inspect(INSPECT).unwrap();
        assert!(containers[0].serves("http://127.0.0.1:8081"));
        assert!(containers[0].serves("http://localhost:8081/"));
        assert!(!containers[0].serves("http://127.0.0.1:8082"));
        assert!(containers[0].serves("http://172.20.0.3:8080"));
        assert!(containers[1].serves("http://10.0.1.7:8080"));
        assert!(!containers[1].serves("http://10.0.1.7:9090"));
        assert_eq!(
            host_and_port("http://node:8080/x"),
            Some(("node".to_string(), 8080))
        );
        assert_eq!(host_and_port("http://node"), Some(("node".to_string(), 80)));
    }
}
