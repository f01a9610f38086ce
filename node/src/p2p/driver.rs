//! The driver: the thin tokio layer around the protocol core. It accepts
//! and dials connections (each run by `link`), feeds the core `Input`s with
//! real time (peer frames, closed links, the node's events and verdicts,
//! timers, commands), and carries out the core's `Action`s: sends, answers,
//! disconnects, validation on importer tasks (so the core never waits on
//! the chain), address-book and ban records in sled, metrics, and the
//! snapshot the `P2pHandle` reads.

use super::codec::encode_message;
use super::compact::Rebuilt;
use super::import::{ImportItem, Importers};
use super::link::{self, Lane, Link, LinkEvents, LinkTasks};
use super::message::{InvItem, Message};
use super::noise::{LocalIdentity, Role};
use super::protocol::addrbook::{AddrEntry, BanKey, BookChange};
use super::protocol::{
    Action, CloseCause, Command, ConnId, Input, MetricUpdate, Mono, NetworkState, ProtocolConfig,
    Restored, Time,
};
use super::{lock, Backend, BlockVerdict, JudgeNow, Shared, UrgentJob};
use crate::metrics::Metrics;
use ledger::chain::AuxTree;
use ledger::encoding;
use ledger::Block;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Per-peer queue budget: 8 MiB of encoded messages.
const SEND_BUDGET_BYTES: usize = 8 * 1024 * 1024;
/// Capacity of the channel from connection tasks; a full channel makes
/// their readers wait, which pushes back on the sockets.
const EVENT_CHANNEL: usize = 4_096;
/// DNS seeds are resolved once per this many maintenance intervals (5 s
/// with the default timing): often enough that a new replica is found
/// soon, rarely enough that a dead address is not redialed in a loop.
const SEED_ROUND_INTERVALS: u32 = 10;

/// Wall-clock Unix milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

/// The driver's clock: monotonic time since `epoch`, and the wall clock.
#[derive(Clone, Copy)]
pub(crate) struct Clock {
    pub epoch: Instant,
}

impl Clock {
    pub fn now(&self) -> Time {
        Time::new(Mono(self.epoch.elapsed()), unix_ms())
    }

    pub fn instant(&self, at: Mono) -> Instant {
        self.epoch + at.0
    }
}

/// Where the address book and bans persist.
pub(crate) struct Stores {
    pub address_book: Option<AuxTree>,
    pub bans: Option<AuxTree>,
}

impl Stores {
    /// Reads what was persisted; undecodable records are dropped, never
    /// fatal (the book is a cache of the network, and a lost ban is a risk,
    /// never an outage).
    pub fn restore(&self) -> Restored {
        let mut restored = Restored::default();
        if let Some(tree) = &self.address_book {
            for (key, value) in read_tree(tree, "address book") {
                match (
                    encoding::decode_with_limit::<SocketAddr>(&key, 64),
                    AddrEntry::decode_record(&value),
                ) {
                    (Ok(addr), Ok(entry)) => restored.addresses.push((addr, entry)),
                    _ => {
                        tracing::warn!(key = %hex::encode(&key), "dropping an undecodable address record");
                        let _ = tree.remove(&key);
                    }
                }
            }
        }
        if let Some(tree) = &self.bans {
            for (key, value) in read_tree(tree, "ban list") {
                match (
                    encoding::decode::<BanKey>(&key),
                    encoding::decode::<u64>(&value),
                ) {
                    (Ok(ban), Ok(expiry_ms)) => restored.bans.push((ban, expiry_ms)),
                    _ => {
                        tracing::warn!(key = %hex::encode(&key), "dropping an undecodable ban record");
                        let _ = tree.remove(&key);
                    }
                }
            }
        }
        if !restored.bans.is_empty() {
            tracing::info!(bans = restored.bans.len(), "ban records loaded");
        }
        restored
    }

    fn apply(&self, change: &BookChange) {
        let (tree, what) = match change {
            BookChange::PutAddr(..) | BookChange::RemoveAddr(_) => {
                (&self.address_book, "address book entry")
            }
            BookChange::PutBan { .. } | BookChange::RemoveBan(_) => (&self.bans, "ban"),
        };
        let Some(tree) = tree else { return };
        let result = match change {
            BookChange::PutAddr(addr, entry) => tree
                .insert(&encoding::encode(addr), &encoding::encode(entry))
                .map(|_| ()),
            BookChange::RemoveAddr(addr) => tree.remove(&encoding::encode(addr)).map(|_| ()),
            BookChange::PutBan { key, until_ms, .. } => tree
                .insert(&encoding::encode(key), &encoding::encode(until_ms))
                .map(|_| ()),
            BookChange::RemoveBan(key) => tree.remove(&encoding::encode(key)).map(|_| ()),
        };
        if let Err(error) = result {
            tracing::warn!(%error, what, "cannot persist a P2P record; it holds until restart");
        }
    }
}

fn read_tree(tree: &AuxTree, what: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    match tree.iter() {
        Ok(records) => records,
        Err(error) => {
            tracing::warn!(%error, what, "cannot read a P2P store; starting without it");
            Vec::new()
        }
    }
}

/// A command from the node's handle, with where to say whether the core
/// took it (`POST /v1/peers` reports a refused pin).
pub(crate) struct CommandRequest {
    pub command: Command,
    pub taken: Option<oneshot::Sender<bool>>,
}

/// What `start` hands the driver.
pub(crate) struct DriverParts<B: Backend> {
    pub config: ProtocolConfig,
    pub backend: B,
    pub metrics: Metrics,
    pub cancel: CancellationToken,
    pub listener: TcpListener,
    pub tracker: TaskTracker,
    pub shared: Arc<Shared>,
    pub commands: mpsc::UnboundedReceiver<CommandRequest>,
    pub stores: Stores,
    pub clock: Clock,
    pub seed: u64,
}

pub(crate) struct Driver<B: Backend> {
    state: NetworkState<B>,
    backend: B,
    metrics: Metrics,
    cancel: CancellationToken,
    tracker: TaskTracker,
    listener: TcpListener,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedReceiver<CommandRequest>,
    stores: Stores,
    clock: Clock,
    connect_timeout: Duration,
    max_frame: usize,
    dns_seeds: Vec<String>,
    seed_round: Duration,
    link_events_tx: LinkEvents,
    urgent_link_events: mpsc::Receiver<Input>,
    bulk_link_events: mpsc::Receiver<Input>,
    verdicts_tx: mpsc::UnboundedSender<Input>,
    verdicts: mpsc::UnboundedReceiver<Input>,
    /// Rebuilt compact blocks: a block's relay waits on them, so they do
    /// not queue behind the tx verdicts.
    rebuilt_tx: mpsc::UnboundedSender<Input>,
    rebuilt: mpsc::UnboundedReceiver<Input>,
    importers: Option<Importers>,
    links: BTreeMap<ConnId, Link>,
    pending_inbound: HashMap<SocketAddr, TcpStream>,
    /// Our side of every link's Noise handshake.
    noise_identity: Arc<LocalIdentity>,
}

impl<B: Backend> Driver<B> {
    pub(crate) fn new(parts: DriverParts<B>) -> Driver<B> {
        let DriverParts {
            config,
            backend,
            metrics,
            cancel,
            listener,
            tracker,
            shared,
            commands,
            stores,
            clock,
            seed,
        } = parts;
        let connect_timeout = config.timing.connect_timeout;
        // Past the handshake a frame may hold a whole block of the chain.
        let max_frame = super::message::max_frame_for(backend.chain_spec());
        let noise_identity = Arc::new(LocalIdentity::new(&config.node_key));
        let dns_seeds = config.dns_seeds.clone();
        let seed_round = config.timing.maintenance_interval * SEED_ROUND_INTERVALS;
        let restored = stores.restore();
        let state = NetworkState::new(config, backend.clone(), seed, clock.now(), restored);
        for (name, help) in [
            (
                "p2p_messages_received_total",
                "P2P messages received, by kind.",
            ),
            ("p2p_messages_sent_total", "P2P messages sent, by kind."),
            ("p2p_bans_total", "Peers banned, by reason."),
            ("p2p_peers", "Connected peers, by direction."),
            (
                "p2p_disconnects_total",
                "Peer connections closed, by reason.",
            ),
            (
                "p2p_rate_limited_total",
                "Peer messages dropped unread by a rate limit, by kind.",
            ),
            (
                "p2p_score_disconnects_total",
                "Peers disconnected for misbehaviour short of a ban, by rule.",
            ),
            (
                "p2p_requests_expired_total",
                "Requests a peer left unanswered until they expired.",
            ),
            (
                "p2p_evictions_total",
                "Inbound peers evicted to make room, by rule.",
            ),
            (
                "p2p_addrs_refused_total",
                "Addresses from peers not taken into the book, by reason.",
            ),
            (
                "p2p_sync_peers_dropped_total",
                "Sync peers dropped, by rule (unbacked claim, block timeout).",
            ),
            (
                "p2p_event_share_waits_total",
                "Times a peer's frames waited, by rule: event_share (its tx frames held back while it had its share queued for the driver), urgent_share (its reader waited for room for a block or connection frame), held_full (its reader stopped reading with its hold of tx frames full).",
            ),
            (
                "p2p_side_blocks_pruned_total",
                "Side-branch blocks forgotten from the index and the store (too deep below the tip, or past the cap on side blocks).",
            ),
            (
                "p2p_orphans_replaced_total",
                "Orphan blocks a peer at its share of the orphan pool replaced with newer ones of its own.",
            ),
        ] {
            metrics.describe(name, help);
        }
        {
            let mut bans = lock(&shared.bans);
            for (key, until) in state.bans().iter() {
                bans.insert(*key, *until);
            }
        }
        let (urgent, urgent_link_events) = mpsc::channel(EVENT_CHANNEL);
        let (bulk, bulk_link_events) = mpsc::channel(EVENT_CHANNEL);
        let link_events_tx = LinkEvents { urgent, bulk };
        let (verdicts_tx, verdicts) = mpsc::unbounded_channel();
        let (rebuilt_tx, rebuilt) = mpsc::unbounded_channel();
        Driver {
            state,
            backend,
            metrics,
            cancel,
            tracker,
            listener,
            shared,
            commands,
            stores,
            clock,
            connect_timeout,
            max_frame,
            dns_seeds,
            seed_round,
            link_events_tx,
            urgent_link_events,
            bulk_link_events,
            verdicts_tx,
            verdicts,
            rebuilt_tx,
            rebuilt,
            importers: None,
            links: BTreeMap::new(),
            pending_inbound: HashMap::new(),
            noise_identity,
        }
    }

    /// Runs until cancelled.
    pub(crate) async fn run(mut self) {
        self.importers = Some(Importers::spawn(
            &self.backend,
            &self.verdicts_tx,
            &self.tracker,
            &self.cancel,
        ));
        if !self.dns_seeds.is_empty() {
            self.tracker.spawn(resolve_seeds(
                self.dns_seeds.clone(),
                self.seed_round,
                self.verdicts_tx.clone(),
                self.cancel.clone(),
            ));
        }
        let mut node_events = self.backend.subscribe();
        let mut node_events_open = true;
        tracing::info!(
            addr = ?self.listener.local_addr().ok(),
            node_id = %hex::encode(self.state.node_id().as_bytes()),
            "P2P listening"
        );
        self.feed(Input::Tick);
        loop {
            let wake = tokio::time::Instant::from_std(self.clock.instant(self.state.next_timer()));
            let has_pending = self.state.has_pending_announcements();
            // Biased: the node's events and peers' block and connection
            // messages first, so tx traffic (frames and the verdicts on
            // them) never delays a block's relay; then timers, then the
            // rest; announcements go out as soon as nothing else waits.
            let input = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => break,
                event = node_events.recv(), if node_events_open => match event {
                    Ok(event) => Input::Node(event),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "P2P fell behind the node's events; some announcements are skipped");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        node_events_open = false;
                        continue;
                    }
                },
                Some(event) = self.urgent_link_events.recv() => match self.link_input(event) {
                    Some(input) => input,
                    None => continue,
                },
                Some(rebuilt) = self.rebuilt.recv() => rebuilt,
                Some(verdict) = self.verdicts.recv() => verdict,
                Some(request) = self.commands.recv() => {
                    self.command(request);
                    continue;
                }
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, remote)) => {
                        let _ = stream.set_nodelay(true);
                        self.pending_inbound.insert(remote, stream);
                        Input::Inbound { remote }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "accepting a peer failed");
                        continue;
                    }
                },
                _ = tokio::time::sleep_until(wake) => Input::Tick,
                Some(event) = self.bulk_link_events.recv() => match self.link_input(event) {
                    Some(input) => input,
                    None => continue,
                },
                _ = std::future::ready(()), if has_pending => Input::Idle,
            };
            self.feed(input);
        }
        for link in self.links.values() {
            link.cancel.cancel();
        }
        self.shared.syncing.store(false, Ordering::Relaxed);
        tracing::info!("P2P stopped");
    }

    /// Passes on a connection task's report, unless the core already
    /// closed that connection; a link that ended by itself is forgotten.
    fn link_input(&mut self, input: Input) -> Option<Input> {
        let (conn, ended) = match &input {
            Input::Connected { conn, .. }
            | Input::Secured { conn, .. }
            | Input::Frame { conn, .. } => (*conn, false),
            Input::DialFailed { conn, .. } | Input::Closed { conn, .. } => (*conn, true),
            _ => return Some(input),
        };
        let known = if ended {
            self.links.remove(&conn).is_some()
        } else {
            let link = self.links.get(&conn);
            if let (Some(link), Input::Frame { message, .. }) = (link, &input) {
                link.frame_taken(message.is_urgent());
            }
            link.is_some()
        };
        known.then_some(input)
    }

    /// Hands the core one input and carries out everything it decides,
    /// including the inputs that carrying it out produces (a peer found
    /// too slow).
    /// Feeds a command and says whether the core took it: a pin that
    /// is not among the core's dial targets afterwards was refused.
    fn command(&mut self, request: CommandRequest) {
        let CommandRequest { command, taken } = request;
        let target = match &command {
            Command::Dial(target) => target.clone(),
        };
        self.feed(Input::Command(command));
        if let Some(taken) = taken {
            let _ = taken.send(self.state.is_dial_target(&target));
        }
    }

    fn feed(&mut self, input: Input) {
        let mut inputs = vec![input];
        while let Some(input) = inputs.pop() {
            self.state.handle(self.clock.now(), input);
            while let Some(action) = self.state.poll_action() {
                if let Some(follow_up) = self.execute(action) {
                    inputs.push(follow_up);
                }
            }
        }
        self.shared
            .relay_backlog
            .store(self.state.relay_backlog(), Ordering::Relaxed);
    }

    fn new_link(&mut self, conn: ConnId) -> LinkTasks<B> {
        let (link, tasks) = link::new_link(
            conn,
            self.backend.clone(),
            self.metrics.clone(),
            self.link_events_tx.clone(),
            self.tracker.clone(),
            self.cancel.child_token(),
            link::LinkConfig {
                send_budget: SEND_BUDGET_BYTES,
                max_frame: self.max_frame,
                noise_identity: self.noise_identity.clone(),
            },
        );
        self.links.insert(conn, link);
        tasks
    }

    fn execute(&mut self, action: Action) -> Option<Input> {
        match action {
            Action::Dial { conn, target } => {
                let tasks = self.new_link(conn);
                self.tracker
                    .spawn(link::dial_and_run(tasks, target, self.connect_timeout));
            }
            Action::Admit { conn, remote } => {
                let stream = self.pending_inbound.remove(&remote)?;
                let tasks = self.new_link(conn);
                self.tracker
                    .spawn(link::run(tasks, stream, Role::Responder));
            }
            Action::Refuse { remote } => {
                self.pending_inbound.remove(&remote);
            }
            Action::Authenticated { conn } => {
                if let Some(link) = self.links.get_mut(&conn) {
                    link.authenticated();
                }
            }
            Action::Send { conn, message } => {
                let link = self.links.get(&conn)?;
                if !link.sender.try_send(
                    Lane::of(&message),
                    message.kind(),
                    encode_message(&message),
                ) {
                    link.cancel.cancel();
                    self.links.remove(&conn);
                    return Some(Input::Closed {
                        conn,
                        cause: CloseCause::SlowPeer,
                    });
                }
            }
            Action::PushCompact { conn, hash } => {
                let link = self.links.get(&conn)?;
                let (kind, payload) = match self.backend.push_payload(&hash) {
                    Some(push) => push,
                    None => {
                        let inv = Message::Inv(vec![InvItem::Block(hash)]);
                        (inv.kind(), encode_message(&inv))
                    }
                };
                if !link.sender.try_send(Lane::Urgent, kind, payload) {
                    link.cancel.cancel();
                    self.links.remove(&conn);
                    return Some(Input::Closed {
                        conn,
                        cause: CloseCause::SlowPeer,
                    });
                }
            }
            Action::Rebuild { from, job } => {
                // A small rebuild runs here; matching the short ids of a
                // large mempool goes where the backend runs its block path
                // (a node's chain writer, ahead of its tx work), or else to
                // a blocking thread, off the driver's task.
                let job = match job.run_if_small(&self.backend) {
                    Ok((compact, rebuilt)) => {
                        if matches!(rebuilt, Rebuilt::Complete(_)) {
                            self.backend.rebuilt_from(&compact);
                        }
                        return Some(Input::Rebuilt {
                            from,
                            compact: Box::new(compact),
                            rebuilt,
                        });
                    }
                    Err(job) => *job,
                };
                // A block rebuilt in full is judged where it was rebuilt
                // (`JudgeNow`), and the core hears the verdict; one that
                // cannot be judged there comes back to the core as rebuilt.
                let backend = self.backend.clone();
                let rebuilt_tx = self.rebuilt_tx.clone();
                let work: UrgentJob = Box::new(move || {
                    let (compact, rebuilt, txids) = job.run_keeping_txids(&backend);
                    let block = match rebuilt {
                        Rebuilt::Complete(block) => block,
                        rebuilt => {
                            let _ = rebuilt_tx.send(Input::Rebuilt {
                                from,
                                compact: Box::new(compact),
                                rebuilt,
                            });
                            return None;
                        }
                    };
                    backend.rebuilt_from(&compact);
                    let rebuilt_at = Instant::now();
                    let then = Box::new(move |outcome: Result<BlockVerdict, Block>| {
                        let input = match outcome {
                            Ok(verdict) => Input::RebuiltJudged {
                                from,
                                compact: Box::new(compact),
                                verdict,
                                judging: rebuilt_at.elapsed(),
                            },
                            Err(block) => Input::Rebuilt {
                                from,
                                compact: Box::new(compact),
                                rebuilt: Rebuilt::Complete(block),
                            },
                        };
                        let _ = rebuilt_tx.send(input);
                    });
                    Some(JudgeNow {
                        from,
                        block,
                        txids: txids.unwrap_or_default(),
                        then,
                    })
                });
                if let Err(work) = self.backend.run_urgent(work) {
                    self.tracker.spawn_blocking(move || {
                        if let Some(judge) = work() {
                            judge.decline();
                        }
                    });
                }
            }
            Action::Answer { conn, items } => {
                if let Some(link) = self.links.get(&conn) {
                    link.answer(items);
                }
            }
            Action::Disconnect { conn, .. } => {
                if let Some(link) = self.links.remove(&conn) {
                    link.cancel.cancel();
                }
            }
            Action::ImportBlock {
                from,
                block,
                size,
                from_sync,
            } => {
                let item = ImportItem {
                    from,
                    block: *block,
                    size,
                    from_sync,
                };
                return self.importers.as_ref()?.block(item);
            }
            Action::ImportTx { from, tx } => {
                return self.importers.as_ref()?.tx(from, *tx);
            }
            Action::Store(change) => {
                self.stores.apply(&change);
                match change {
                    BookChange::PutBan { key, until, .. } => {
                        lock(&self.shared.bans).insert(key, until);
                    }
                    BookChange::RemoveBan(key) => {
                        lock(&self.shared.bans).remove(&key);
                    }
                    _ => {}
                }
            }
            Action::Metric(MetricUpdate::Inc { name, label }) => {
                self.metrics.inc(name, &[label]);
            }
            Action::Metric(MetricUpdate::Add { name, label, value }) => {
                self.metrics.add(name, &[label], value);
            }
            Action::Metric(MetricUpdate::Observe { name, micros }) => {
                self.metrics.observe(name, micros as f64 / 1e6);
            }
            Action::Metric(MetricUpdate::Set { name, label, value }) => {
                self.metrics.set(name, &[label], value);
            }
            Action::Publish(snapshot) => {
                self.shared
                    .syncing
                    .store(snapshot.syncing, Ordering::Relaxed);
                *lock(&self.shared.snapshot) = *snapshot;
            }
        }
        None
    }
}

/// Resolves every DNS seed to all its addresses, once per `round`, and
/// reports them to the core. A name that does not resolve this round
/// contributes nothing (a service with no task yet, a DNS hiccup); the
/// next round tries again.
async fn resolve_seeds(
    seeds: Vec<String>,
    round: Duration,
    inputs: mpsc::UnboundedSender<Input>,
    cancel: CancellationToken,
) {
    loop {
        let mut addrs = Vec::new();
        for seed in &seeds {
            let lookup = tokio::select! {
                _ = cancel.cancelled() => return,
                lookup = tokio::net::lookup_host(seed.as_str()) => lookup,
            };
            match lookup {
                Ok(found) => addrs.extend(found),
                Err(error) => tracing::debug!(%seed, %error, "DNS seed did not resolve"),
            }
        }
        addrs.sort_unstable();
        addrs.dedup();
        if inputs.send(Input::SeedsResolved { addrs }).is_err() {
            return;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(round) => {}
        }
    }
}
