//! The nodes `testnet chaos` puts its faults on, of either kind of
//! testnet: Docker containers (a compose project, a swarm stack, or the
//! containers behind `--rpc-url`), where every fault works; or the local
//! processes of `testnet up` behind loopback `--rpc-url`s, where kill and
//! pause work (`testnet::local` says why partitions and netem do not).
//! Finding them, applying a fault and healing it are here; the rounds, the
//! load and the verdict are in `chaos`.

use super::chaos::{default_project, ChaosArgs};
use anyhow::{bail, Context};
use std::time::{Duration, Instant};
use testnet::api::Api;
use testnet::chaos::{Fault, FaultKind};
use testnet::docker::{self, Container};
use testnet::local::{self, LocalNode};

pub enum Nodes {
    Docker(Vec<Container>),
    /// A swarm stack's tasks, each reached through a `Relay` (index for
    /// index): a killed task is replaced by a new container, with new IPs,
    /// in the same slot, and its relay follows it.
    Swarm(Vec<Container>, Vec<docker::Relay>),
    Local(Vec<LocalNode>),
}

impl Nodes {
    /// The nodes the arguments name, and the RPC URL of each, in order.
    /// `--rpc-url`s that all reach local processes make a local testnet;
    /// otherwise they must reach containers.
    pub async fn find(args: &ChaosArgs) -> anyhow::Result<(Nodes, Vec<String>)> {
        if let Some(stack) = &args.stack {
            let containers = docker::swarm_stack(stack)
                .await
                .map_err(anyhow::Error::msg)?;
            if containers.is_empty() {
                bail!(
                    "swarm stack {stack:?} has no running tasks on this engine; deploy it first \
                     (docker stack deploy -c deploy/swarm/stack.yml {stack})"
                );
            }
            let mut relays = Vec::new();
            for container in &containers {
                let ip = container.host_ip.as_ref().with_context(|| {
                    format!(
                        "task {} has no address on docker_gwbridge, so this host cannot \
                         reach it (is it on another swarm host?)",
                        container.name
                    )
                })?;
                relays.push(docker::Relay::start(format!("{ip}:{}", docker::RPC_PORT)).await?);
            }
            let urls = relays.iter().map(docker::Relay::url).collect();
            return Ok((Nodes::Swarm(containers, relays), urls));
        }
        if args.compose_file.is_none() {
            if let Ok(nodes) = local::behind_urls(&args.rpc_url) {
                return Ok((Nodes::Local(nodes), args.rpc_url.clone()));
            }
        }
        let containers = match &args.compose_file {
            Some(file) => {
                let project = args
                    .project
                    .clone()
                    .unwrap_or_else(|| default_project(file));
                let containers = docker::compose_project(&project)
                    .await
                    .map_err(anyhow::Error::msg)?;
                if containers.is_empty() {
                    bail!(
                        "compose project {project:?} has no containers; start it first \
                         (docker compose -f {} -p {project} up -d)",
                        file.display()
                    );
                }
                containers
            }
            None => docker::behind_urls(&args.rpc_url).await.map_err(|error| {
                let local = local::behind_urls(&args.rpc_url).err().unwrap_or_default();
                anyhow::anyhow!(
                    "the --rpc-url nodes are neither local processes ({local}) nor containers ({error})"
                )
            })?,
        };
        let urls: Vec<String> = if args.rpc_url.is_empty() {
            containers
                .iter()
                .map(|container| {
                    container.rpc_url().with_context(|| {
                        format!("container {} has no reachable RPC", container.name)
                    })
                })
                .collect::<anyhow::Result<_>>()?
        } else {
            args.rpc_url.clone()
        };
        for container in &containers {
            if container.status != "running" {
                bail!(
                    "container {} is {}, not running; start the testnet first",
                    container.name,
                    container.status
                );
            }
        }
        Ok((Nodes::Docker(containers), urls))
    }

    /// The faults to draw from: `asked`, or by default every fault this
    /// kind of testnet supports. Asking for one it does not support is an
    /// error that says why; so is a kill of nodes no `testnet up` restarts.
    pub fn faults(&self, asked: Option<&[FaultKind]>) -> anyhow::Result<Vec<FaultKind>> {
        let supported: &[FaultKind] = match self {
            Nodes::Docker(_) | Nodes::Swarm(..) => &FaultKind::ALL,
            Nodes::Local(_) => &[FaultKind::Kill, FaultKind::Pause],
        };
        let faults = asked.map_or_else(|| supported.to_vec(), <[FaultKind]>::to_vec);
        if faults.is_empty() {
            bail!("--faults names no fault");
        }
        if let Some(kind) = faults.iter().find(|kind| !supported.contains(kind)) {
            bail!(
                "{kind} needs a network namespace per node, which local processes do not have \
                 (they share one loopback address, so no packet filter can tell them apart); \
                 use --faults kill,pause here, or a Docker testnet"
            );
        }
        if let (Nodes::Local(nodes), true) = (self, faults.contains(&FaultKind::Kill)) {
            if let Some(node) = nodes.iter().find(|node| !node.launched_by_testnet_up()) {
                bail!(
                    "{} (pid {}) was not started by `testnet up`, which restarts killed nodes; \
                     leave kill out of --faults",
                    node.name(),
                    node.pid
                );
            }
        }
        Ok(faults)
    }

    pub fn len(&self) -> usize {
        match self {
            Nodes::Docker(containers) | Nodes::Swarm(containers, _) => containers.len(),
            Nodes::Local(nodes) => nodes.len(),
        }
    }

    pub fn names(&self) -> Vec<String> {
        match self {
            Nodes::Docker(containers) | Nodes::Swarm(containers, _) => containers
                .iter()
                .map(|container| container.name.clone())
                .collect(),
            Nodes::Local(nodes) => nodes
                .iter()
                .map(|node| format!("{} (pid {})", node.name(), node.pid))
                .collect(),
        }
    }

    /// Looks again at every node: PIDs change when one restarts.
    pub async fn refresh(&mut self) {
        match self {
            Nodes::Docker(containers) | Nodes::Swarm(containers, _) => {
                for container in containers.iter_mut() {
                    if let Ok(fresh) = docker::refresh(container).await {
                        // The gwbridge IP is not in `docker inspect`.
                        *container = Container {
                            host_ip: container.host_ip.take(),
                            ..fresh
                        };
                    }
                }
            }
            Nodes::Local(nodes) => {
                for node in nodes.iter_mut() {
                    if let Ok(fresh) = local::behind_url(&node.url) {
                        *node = fresh;
                    }
                }
            }
        }
    }

    /// Applies a fault; `Some(note)` says how, when it was not as described.
    pub async fn apply(&self, fault: &Fault) -> Result<Option<String>, String> {
        match self {
            Nodes::Docker(containers) | Nodes::Swarm(containers, _) => {
                apply_docker(fault, containers).await
            }
            Nodes::Local(nodes) => {
                match fault {
                    Fault::Kill { node, .. } => local::kill(&nodes[*node])?,
                    Fault::Pause { node, .. } => local::pause(&nodes[*node])?,
                    Fault::Partition { .. } | Fault::Netem { .. } => {
                        return Err(format!("{} is not supported on local nodes", fault.kind()))
                    }
                }
                Ok(None)
            }
        }
    }

    /// Undoes a fault. For a kill: starts the node again and waits until
    /// it answers `/ready`; a node that exits instead (its store would not
    /// open) or stays unready is a broken invariant.
    pub async fn heal(
        &mut self,
        fault: &Fault,
        apis: &[Api],
        bound: Duration,
    ) -> Result<(), String> {
        match self {
            Nodes::Docker(containers) => heal_docker(fault, containers, apis, bound).await,
            Nodes::Swarm(containers, relays) => match fault {
                Fault::Kill { node, .. } => {
                    heal_swarm_kill(*node, containers, relays, apis, bound).await
                }
                _ => heal_docker(fault, containers, apis, bound).await,
            },
            Nodes::Local(nodes) => match fault {
                Fault::Kill { node, .. } => {
                    let killed = nodes[*node].clone();
                    local::request_restart(&killed)?;
                    let deadline = Instant::now() + bound;
                    loop {
                        if matches!(apis[*node].ready().await, Ok(true)) {
                            if let Ok(fresh) = local::behind_url(&killed.url) {
                                nodes[*node] = fresh;
                            }
                            return Ok(());
                        }
                        if Instant::now() >= deadline {
                            return Err(format!(
                                "{} not ready {} s after restart (could it not open its store?): {}",
                                killed.name(),
                                bound.as_secs(),
                                killed.log_tail(5)
                            ));
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                Fault::Pause { node, .. } => local::resume(&nodes[*node]),
                Fault::Partition { .. } | Fault::Netem { .. } => Ok(()),
            },
        }
    }
}

async fn apply_docker(fault: &Fault, containers: &[Container]) -> Result<Option<String>, String> {
    match fault {
        Fault::Kill { node, .. } => {
            docker::docker(&["kill", "--signal", "KILL", &containers[*node].id]).await?;
        }
        Fault::Pause { node, .. } => {
            docker::docker(&["pause", &containers[*node].id]).await?;
        }
        Fault::Partition { side, .. } => partition("-A", side, containers).await?,
        Fault::Netem {
            nodes,
            delay_ms,
            jitter_ms,
            loss_percent,
            ..
        } => {
            let mut fallback = false;
            for node in nodes {
                let method =
                    docker::netem_add(&containers[*node], *delay_ms, *jitter_ms, *loss_percent)
                        .await?;
                fallback |= method == docker::Degraded::TbfAndDrop;
            }
            if fallback {
                return Ok(Some(
                    "no sch_netem in this kernel: tbf queueing delay + iptables random drop".into(),
                ));
            }
        }
    }
    Ok(None)
}

/// Cuts (`-A`) or heals (`-D`) traffic between `side` and everyone else,
/// in both directions, in each container's own namespace.
async fn partition(action: &str, side: &[usize], containers: &[Container]) -> Result<(), String> {
    let members = |inside: bool| -> Vec<&Container> {
        containers
            .iter()
            .enumerate()
            .filter(|(index, _)| side.contains(index) == inside)
            .map(|(_, container)| container)
            .collect()
    };
    let (inside, outside) = (members(true), members(false));
    let mut first_error = None;
    for (group, others) in [(&inside, &outside), (&outside, &inside)] {
        for container in group.iter() {
            if let Err(error) = docker::drop_traffic(action, container, others).await {
                first_error.get_or_insert(error);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

async fn heal_docker(
    fault: &Fault,
    containers: &mut [Container],
    apis: &[Api],
    bound: Duration,
) -> Result<(), String> {
    match fault {
        Fault::Kill { node, .. } => {
            let id = containers[*node].id.clone();
            docker::docker(&["start", &id]).await?;
            let deadline = Instant::now() + bound;
            loop {
                if let Ok(fresh) = docker::refresh(&containers[*node]).await {
                    containers[*node] = fresh;
                }
                let container = &containers[*node];
                if container.status == "exited" || container.status == "dead" {
                    return Err(format!(
                        "{} exited after restart (could it not open its store?): {}",
                        container.name,
                        docker::log_tail(container, 5).await
                    ));
                }
                if matches!(apis[*node].ready().await, Ok(true)) {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    return Err(format!(
                        "{} not ready {} s after restart: {}",
                        container.name,
                        bound.as_secs(),
                        docker::log_tail(container, 5).await
                    ));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Fault::Pause { node, .. } => docker::docker(&["unpause", &containers[*node].id])
            .await
            .map(|_| ()),
        Fault::Partition { side, .. } => partition("-D", side, containers).await,
        Fault::Netem {
            nodes,
            loss_percent,
            ..
        } => {
            for node in nodes {
                docker::netem_clear(&containers[*node], *loss_percent).await?;
            }
            Ok(())
        }
    }
}

/// After a kill in a swarm: the task's container stays dead and swarm
/// starts a new one in the same slot (same volume, so the same store).
/// Waits for it, points the slot's relay at it, and waits until it
/// answers `/ready`; a slot with no ready container within `bound` is a
/// broken invariant.
async fn heal_swarm_kill(
    node: usize,
    containers: &mut [Container],
    relays: &[docker::Relay],
    apis: &[Api],
    bound: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + bound;
    let old = containers[node].clone();
    loop {
        if let Ok(Some(fresh)) = docker::swarm_replacement(&old).await {
            if let Some(ip) = &fresh.host_ip {
                relays[node].retarget(format!("{ip}:{}", docker::RPC_PORT));
            }
            containers[node] = fresh;
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "swarm started no new task in {}'s slot within {} s",
                old.name,
                bound.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    loop {
        if matches!(apis[node].ready().await, Ok(true)) {
            return Ok(());
        }
        let container = &containers[node];
        if Instant::now() >= deadline {
            return Err(format!(
                "{} (replacing {}) not ready {} s after the kill (could it not open its store?): {}",
                container.name,
                old.name,
                bound.as_secs(),
                docker::log_tail(container, 5).await
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
