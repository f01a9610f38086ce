//! The containers of a Docker testnet, as `testnet chaos` sees them, and
//! the faults it puts on them. Everything goes through the `docker` CLI
//! (so it works with any engine the user's CLI talks to) and, for network
//! faults, `nsenter` into a container's network namespace from the host,
//! where `iptables` and `tc` run: the image itself needs no tools (ours is
//! `FROM scratch`). Network faults need root (or passwordless sudo).
//!
//! Finding the containers: a compose project's by its label
//! (`com.docker.compose.project`), a swarm stack's by its label
//! (`com.docker.stack.namespace`), or the ones behind given RPC URLs (the
//! container publishing the URL's port, or holding the URL's IP).
//!
//! A swarm task's overlay IP is not reachable from the host, and a killed
//! task comes back as a new container (new IPs) in the same slot. So a
//! stack's nodes are reached through their IP on `docker_gwbridge` (the
//! bridge every swarm task has for egress, which the host is on), behind a
//! `Relay` per slot: a loopback port whose target moves to the slot's new
//! container, so the URLs a run hands out stay valid.

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
    /// For a swarm task: its service and slot (`gl_node.3`), which a
    /// replacement task keeps.
    pub slot: Option<String>,
    /// For a swarm task: its IP on `docker_gwbridge`, which the host
    /// reaches (filled in by `swarm_stack`).
    pub host_ip: Option<String>,
}

impl Container {
    /// The URL that reaches its RPC from this host: the published port on
    /// loopback, else its first IP.
    pub fn rpc_url(&self) -> Option<String> {
        if let Some(port) = self.rpc_host_port {
            return Some(format!("http://127.0.0.1:{port}"));
        }
        if let Some(ip) = &self.host_ip {
            return Some(format!("http://{ip}:{RPC_PORT}"));
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
            || (port == RPC_PORT
                && (self.ips.values().any(|ip| *ip == host)
                    || self.host_ip.as_deref() == Some(host.as_str())))
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
        // `gl_node.3.<task id>`: the slot is all but the task id.
        let slot = label("com.docker.swarm.task.name")
            .and_then(|task| task.rsplit_once('.').map(|(slot, _)| slot.to_string()));
        containers.push(Container {
            id,
            name,
            service,
            ips,
            rpc_host_port,
            pid,
            status: text("/State/Status").unwrap_or_default(),
            slot,
            host_ip: None,
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

/// Each container's IP on `docker_gwbridge`, by container id, from
/// `docker network inspect` (whose `Containers` map is keyed by id).
pub fn parse_gwbridge(json: &str) -> BTreeMap<String, String> {
    let value: Value = serde_json::from_str(json).unwrap_or(Value::Null);
    let mut ips = BTreeMap::new();
    let networks = value.as_array().cloned().unwrap_or_default();
    for network in &networks {
        let Some(containers) = network.get("Containers").and_then(Value::as_object) else {
            continue;
        };
        for (id, endpoint) in containers {
            if let Some(ip) = endpoint
                .get("IPv4Address")
                .and_then(Value::as_str)
                .and_then(|cidr| cidr.split('/').next())
                .filter(|ip| !ip.is_empty())
            {
                ips.insert(id.clone(), ip.to_string());
            }
        }
    }
    ips
}

/// `gl_node.3` -> (`gl_node`, 3), to order a stack's tasks by slot.
fn slot_order(container: &Container) -> (String, u64, String) {
    let slot = container.slot.clone().unwrap_or_default();
    let (service, number) = slot.rsplit_once('.').unwrap_or((slot.as_str(), ""));
    (
        service.to_string(),
        number.parse().unwrap_or(u64::MAX),
        container.name.clone(),
    )
}

/// The running tasks of swarm stack `stack` on this engine, ordered by
/// service and slot, each with its `docker_gwbridge` IP.
pub async fn swarm_stack(stack: &str) -> Result<Vec<Container>, String> {
    let filter = format!("label=com.docker.stack.namespace={stack}");
    let ids: Vec<String> = docker(&["ps", "-q", "--no-trunc", "--filter", &filter])
        .await?
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let mut containers = inspect(&ids).await?;
    let bridge = parse_gwbridge(&docker(&["network", "inspect", "docker_gwbridge"]).await?);
    for container in &mut containers {
        container.host_ip = bridge.get(&container.id).cloned();
    }
    containers.sort_by_key(slot_order);
    Ok(containers)
}

/// The running container of `old`'s swarm slot, if it is another one than
/// `old` (swarm replaces a task whose container died).
pub async fn swarm_replacement(old: &Container) -> Result<Option<Container>, String> {
    let (Some(service), Some(slot)) = (&old.service, &old.slot) else {
        return Ok(None);
    };
    let filter = format!("label=com.docker.swarm.service.name={service}");
    let ids: Vec<String> = docker(&["ps", "-q", "--no-trunc", "--filter", &filter])
        .await?
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let Some(mut fresh) = inspect(&ids).await?.into_iter().find(|container| {
        container.id != old.id
            && container.slot.as_ref() == Some(slot)
            && container.status == "running"
    }) else {
        return Ok(None);
    };
    let bridge = parse_gwbridge(&docker(&["network", "inspect", "docker_gwbridge"]).await?);
    fresh.host_ip = bridge.get(&fresh.id).cloned();
    Ok(fresh.host_ip.is_some().then_some(fresh))
}

/// A loopback TCP port that forwards each connection to its current
/// target (`HOST:PORT`), which `retarget` moves: a stable address for a
/// swarm slot whose container is replaced.
pub struct Relay {
    target: std::sync::Arc<std::sync::Mutex<String>>,
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    pub async fn start(target: String) -> std::io::Result<Relay> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let target = std::sync::Arc::new(std::sync::Mutex::new(target));
        let current = target.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let to = current
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Ok(Relay { target, port, task })
    }

    /// The URL that reaches the target's RPC through this relay.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// New connections go to `target` from now on.
    pub fn retarget(&self, target: String) {
        *self
            .target
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = target;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
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
            as_root(&random_drop_rule(&pid, "-A", chain, &probability)).await?;
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
        let _ = as_root(&random_drop_rule(&pid, "-D", chain, &probability)).await;
    }
    Ok(())
}

/// The `iptables` command, run in the network namespace of process `pid`,
/// that appends (`-A`) or deletes (`-D`) the rule dropping packets of
/// `chain` with `probability`: the same words both ways, so a delete finds
/// exactly the rule the append made.
fn random_drop_rule<'a>(
    pid: &'a str,
    action: &'a str,
    chain: &'a str,
    probability: &'a str,
) -> [&'a str; 16] {
    [
        "nsenter",
        "-t",
        pid,
        "-n",
        "iptables",
        "-w",
        action,
        chain,
        "-m",
        "statistic",
        "--mode",
        "random",
        "--probability",
        probability,
        "-j",
        "DROP",
    ]
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
        "Config": {"Labels": {"com.docker.swarm.service.name": "gl_node", "com.docker.swarm.task.name": "gl_node.3.xyz"}},
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
        assert_eq!(task.slot.as_deref(), Some("gl_node.3"));
        assert_eq!(node1.slot, None);
        assert!(parse_inspect("{}").is_err());
    }

    #[test]
    fn swarm_tasks_are_reached_by_their_gwbridge_ip_and_ordered_by_slot() {
        let bridge = parse_gwbridge(
            r#"[{"Name": "docker_gwbridge", "Containers": {
                "def456": {"Name": "gateway_1", "IPv4Address": "172.18.0.4/16"},
                "ingress-sbox": {"Name": "gateway_ingress-sbox", "IPv4Address": "172.18.0.2/16"}
            }}]"#,
        );
        assert_eq!(bridge.get("def456").map(String::as_str), Some("172.18.0.4"));
        let mut containers = parse_inspect(INSPECT).unwrap();
        let mut task = containers.remove(1);
        task.host_ip = bridge.get(&task.id).cloned();
        assert_eq!(task.rpc_url().as_deref(), Some("http://172.18.0.4:8080"));
        assert!(task.serves("http://172.18.0.4:8080"));
        let mut slot10 = task.clone();
        slot10.slot = Some("gl_node.10".into());
        let mut ordered = [slot10, task];
        ordered.sort_by_key(slot_order);
        assert_eq!(ordered[0].slot.as_deref(), Some("gl_node.3"));
        assert!(parse_gwbridge("not json").is_empty());
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
