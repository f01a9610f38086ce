//! The world: every node, the network between them, the mining oracle and
//! the wallets, driven by one scheduler on virtual time. It routes what
//! each node sends, wakes nodes when their core asks to be woken, and
//! keeps the statistics. `faults` applies churn and kills; `finish`
//! settles the run's end.

use super::mining::{sim_chain_spec, Wallets};
use super::network::{dial_targets, node_addr, Network};
use super::node::{Observed, Outbound, Payload, SimNode};
use super::options::SimOptions;
use super::payloads::CompactPayloads;
use super::report::{Report, Stats};
use super::scheduler::{Scheduler, SimTime, SECOND};
use super::timers::Timers;
use super::trace::Trace;
use ledger::chain::MemoryArena;
use ledger::sigcache::SignatureCache;
use ledger::{Address, BlockHash, ChainSpec, SecretKey};
use node::p2p::codec::{decode_message, single_tx_announcement, MAX_FRAME_BYTES};
use node::p2p::message::{NetworkMagic, KINDS};
use node::p2p::protocol::{CloseCause, ConnId, Input, ProtocolConfig};
use node::p2p::P2pTiming;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cell::RefCell;
use std::io::Write;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod faults;
mod finish;

/// Inbound slots per node (bitcoind's default is 125 connections).
const MAX_INBOUND: usize = 117;

/// How many events ahead `World::prefetch_ahead` takes each of its steps
/// (a node's fields, its lists, the connection, the frame's items). An
/// event takes a microsecond or two and a load from memory a tenth of one;
/// a step further ahead than needed only risks the line being evicted
/// again before its turn.
const PREFETCH_AHEAD: [usize; 4] = [6, 4, 2, 1];

enum Event {
    /// The node has nothing else to do at this instant.
    Idle {
        node: usize,
    },
    Deliver {
        node: usize,
        conn: ConnId,
        payload: Payload,
    },
    Inbound {
        node: usize,
        remote: SocketAddr,
    },
    Connected {
        node: usize,
        conn: ConnId,
        remote: SocketAddr,
    },
    /// What the secure transport tells the core once a connection is up:
    /// the node id the peer proved (the simulation skips the encryption
    /// itself, which changes no protocol decision).
    Secured {
        node: usize,
        conn: ConnId,
        peer: usize,
    },
    DialFailed {
        node: usize,
        conn: ConnId,
        error: &'static str,
    },
    Closed {
        node: usize,
        conn: ConnId,
    },
    Mine,
    Tx,
    PartitionStart,
    PartitionEnd,
    ChurnLeave,
    ChurnReturn {
        node: usize,
    },
    Kill,
    Sample,
}

impl Event {
    /// The node the event is for, if it is for one.
    fn node(&self) -> Option<usize> {
        match self {
            Event::Idle { node }
            | Event::Deliver { node, .. }
            | Event::Inbound { node, .. }
            | Event::Connected { node, .. }
            | Event::Secured { node, .. }
            | Event::DialFailed { node, .. }
            | Event::Closed { node, .. }
            | Event::ChurnReturn { node } => Some(*node),
            _ => None,
        }
    }
}

/// Called once per simulated second with the simulated time.
pub type Progress<'a> = &'a mut dyn FnMut(SimTime);

pub struct World {
    options: SimOptions,
    scheduler: Scheduler<Event>,
    network: Network,
    nodes: Vec<SimNode>,
    /// Each node's next core timer. Timers live here and not in the
    /// event queue: a node's timer moves after nearly every input, and
    /// each move would leave a stale event in the queue.
    timers: Timers,
    idle_queued: Vec<bool>,
    /// Empty lists with capacity, swapped with a node's after each input.
    spare_outbound: Vec<Outbound>,
    spare_observed: Vec<Observed>,
    /// Draws of the network (latency, loss) and of faults.
    rng: ChaCha8Rng,
    /// Draws of the mining oracle and the wallets, apart from the
    /// network's so that changing a link does not move every block.
    oracle_rng: ChaCha8Rng,
    wallets: Wallets,
    miner_nodes: Vec<usize>,
    miner_addrs: Vec<Address>,
    spec: Arc<ChainSpec>,
    genesis: BlockHash,
    stats: Stats,
    connect_timeout: SimTime,
    /// Nodes `--kill` took: offline for good, their hash power gone.
    killed: Vec<bool>,
    trace: Trace,
}

impl World {
    pub fn new(options: SimOptions) -> Result<World, String> {
        options.validate()?;
        let n = options.nodes;
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        let oracle_rng = ChaCha8Rng::seed_from_u64(options.seed ^ 0x6f72_6163_6c65);
        let wallets = Wallets::new(n.clamp(100, 10_000));
        let spec = Arc::new(sim_chain_spec(&options, wallets.addresses()));
        let genesis = spec.genesis_hash();
        let cache = SignatureCache::new(1 << 20);
        let targets = dial_targets(&options, &mut rng);
        let timing = P2pTiming {
            tx_announce_interval: options.tx_trickle,
            ..P2pTiming::default()
        };
        let connect_timeout = timing.connect_timeout.as_nanos() as SimTime;
        // Every node's chain is a member of one in-memory arena, which
        // holds a block (and every index entry and account value nodes
        // agree on) once for the whole network.
        let arena = MemoryArena::new();
        let compact_payloads = Rc::new(RefCell::new(CompactPayloads::default()));
        let mut nodes = Vec::with_capacity(n);
        for (index, targets) in targets.iter().enumerate() {
            let config = ProtocolConfig {
                listen_addr: node_addr(index),
                peers: targets
                    .iter()
                    .map(|target| node_addr(*target).to_string())
                    .collect(),
                dns_seeds: Vec::new(),
                external_addr: None,
                // The topology is the experiment: no address gossip dials.
                no_discovery: true,
                max_inbound: MAX_INBOUND,
                max_outbound: options.degree,
                ban_duration: Duration::from_secs(24 * 3600),
                network_magic: NetworkMagic(spec.network_magic()),
                genesis_hash: genesis,
                node_key: SecretKey::from_seed(&format!("sim-node-{index}")),
                timing: timing.clone(),
            };
            let seed = options
                .seed
                .wrapping_mul(1_000_003)
                .wrapping_add(index as u64);
            nodes.push(SimNode::new(
                Arc::clone(&spec),
                cache.clone(),
                config,
                seed,
                (&arena, &format!("node{index}")),
                Rc::clone(&compact_payloads),
            )?);
        }
        let miners = options.miners.len();
        let miner_nodes: Vec<usize> = (0..miners).map(|k| k * n / miners).collect();
        let miner_addrs = (0..miners)
            .map(|k| {
                Address::from_public_key(
                    &SecretKey::from_seed(&format!("sim-miner-{k}")).public_key(),
                )
            })
            .collect();
        Ok(World {
            network: Network::new(&options),
            scheduler: Scheduler::default(),
            timers: Timers::new(n),
            idle_queued: vec![false; n],
            spare_outbound: Vec::new(),
            spare_observed: Vec::new(),
            nodes,
            rng,
            oracle_rng,
            wallets,
            miner_nodes,
            miner_addrs,
            stats: Stats::new(n, genesis),
            spec,
            genesis,
            connect_timeout,
            killed: vec![false; n],
            trace: Trace::off(),
            options,
        })
    }

    /// Writes the event log (`--trace`) into `out`.
    pub fn with_trace(mut self, out: Box<dyn Write>) -> World {
        self.trace = Trace::to(out);
        self
    }

    /// Runs to the end and reports.
    pub fn run(mut self, mut progress: Option<Progress<'_>>) -> Outcome {
        let started = Instant::now();
        let end = self.options.duration.as_nanos() as SimTime;
        for node in 0..self.nodes.len() {
            self.nodes[node].feed(0, Input::Tick);
            self.after_feed(node);
        }
        self.schedule_mining();
        if self.options.tx_rate > 0.0 {
            self.schedule_tx();
        }
        if let Some(partition) = &self.options.partition {
            let at = partition.at.as_nanos() as SimTime;
            self.scheduler.at(at, Event::PartitionStart);
            self.scheduler.at(
                at + partition.duration.as_nanos() as SimTime,
                Event::PartitionEnd,
            );
        }
        if let Some(churn) = &self.options.churn {
            self.scheduler
                .at(churn.every.as_nanos() as SimTime, Event::ChurnLeave);
        }
        if let Some(kill) = &self.options.kill {
            self.scheduler
                .at(kill.at.as_nanos() as SimTime, Event::Kill);
        }
        self.scheduler.at(SECOND, Event::Sample);
        loop {
            // A timer due no later than the next event runs first.
            let timer = self.timers.first().filter(|(at, _)| *at <= end);
            let event_at = self.scheduler.next_at().filter(|at| *at <= end);
            match (timer, event_at) {
                (Some((at, node)), event_at) if event_at.is_none_or(|event_at| at <= event_at) => {
                    self.timers.set(node, SimTime::MAX);
                    self.scheduler.run_at(at);
                    self.trace
                        .line(at, "timer", format_args!("\"node\":{node}"));
                    self.feed(node, Input::Tick);
                }
                (_, Some(_)) => {
                    let Some(event) = self.scheduler.pop_until(end) else {
                        break;
                    };
                    self.prefetch_ahead();
                    if let Event::Sample = event {
                        if let Some(progress) = progress.as_mut() {
                            progress(self.scheduler.now());
                        }
                    }
                    self.handle(event);
                }
                _ => break,
            }
        }
        self.scheduler.advance_to(end);
        self.finish(started.elapsed().as_secs_f64())
    }

    /// Asks the CPU to load, while this event runs, what the events
    /// queued next will read first: each is for one of a thousand nodes,
    /// whose state is rarely still in the cache, and most of an event's
    /// time would otherwise be spent waiting for it. In four steps, as
    /// each needs what the one before loaded: a node's fields; its
    /// connection lists, its mempool's header and the frame; the
    /// connection and the mempool's known-txid table; the peer's state
    /// and, for a frame announcing one tx, the cells where the core and
    /// the mempool will look the tx up. Only a hint: nothing is read for
    /// it that the run depends on.
    fn prefetch_ahead(&self) {
        let [fields, lists, conn, frame] = PREFETCH_AHEAD;
        if let Some(node) = self.scheduler.peek_ahead(fields).and_then(Event::node) {
            self.nodes[node].prefetch_fields();
            self.network.prefetch_ends(node);
        }
        if let Some(event) = self.scheduler.peek_ahead(lists) {
            if let Some(node) = event.node() {
                self.nodes[node].prefetch_lists();
            }
            if let Event::Deliver {
                node,
                conn,
                payload,
            } = event
            {
                self.network.prefetch_end(*node, *conn);
                if let Some(first) = payload.first() {
                    ledger::prefetch::prefetch(first);
                }
            }
        }
        if let Some(Event::Deliver { node, conn, .. }) = self.scheduler.peek_ahead(conn) {
            self.nodes[*node].prefetch_conn(*conn);
        }
        if let Some(Event::Deliver {
            node,
            conn,
            payload,
        }) = self.scheduler.peek_ahead(frame)
        {
            self.nodes[*node].prefetch_frame(*conn, single_tx_announcement(payload));
        }
    }

    fn handle(&mut self, event: Event) {
        let now = self.scheduler.now();
        match event {
            Event::Idle { node } => {
                self.idle_queued[node] = false;
                self.nodes[node].idle(now);
                self.after_feed(node);
            }
            Event::Deliver {
                node,
                conn,
                payload,
            } => {
                if self.network.end(node, conn).is_none() {
                    self.stats.dropped_closed += 1;
                    return;
                }
                match decode_message(&payload, MAX_FRAME_BYTES) {
                    Ok(message) => self.feed(node, Input::Frame { conn, message }),
                    Err(error) => {
                        self.trace.line(
                            now,
                            "bad_frame",
                            format_args!(
                                "\"node\":{node},\"conn\":{},\"reason\":\"{}\"",
                                conn.0,
                                error.reason()
                            ),
                        );
                        self.network.remove_end(node, conn);
                        self.feed(
                            node,
                            Input::Closed {
                                conn,
                                cause: CloseCause::BadFrame {
                                    reason: error.reason(),
                                    detail: error.to_string(),
                                },
                            },
                        );
                    }
                }
            }
            Event::Inbound { node, remote } => {
                if self.network.offline[node] {
                    if let Some((from, conn, latency)) = self.network.refuse(node, remote) {
                        self.scheduler.after(
                            latency,
                            Event::DialFailed {
                                node: from,
                                conn,
                                error: "connection refused",
                            },
                        );
                    }
                    return;
                }
                self.feed(node, Input::Inbound { remote });
            }
            Event::Connected { node, conn, remote } => {
                if let Some(end) = self.network.end(node, conn) {
                    self.feed(node, Input::Connected { conn, remote });
                    let node_id = self.nodes[end.peer].node_id();
                    self.feed(node, Input::Secured { conn, node_id });
                }
            }
            Event::Secured { node, conn, peer } => {
                if self.network.end(node, conn).is_some() {
                    let node_id = self.nodes[peer].node_id();
                    self.feed(node, Input::Secured { conn, node_id });
                }
            }
            Event::DialFailed { node, conn, error } => self.feed(
                node,
                Input::DialFailed {
                    conn,
                    error: error.to_string(),
                },
            ),
            Event::Closed { node, conn } => {
                if self.network.remove_end(node, conn).is_some() {
                    self.feed(
                        node,
                        Input::Closed {
                            conn,
                            cause: CloseCause::Disconnected("closed by peer".into()),
                        },
                    );
                }
            }
            Event::Mine => self.mine(now),
            Event::Tx => self.submit_tx(now),
            Event::PartitionStart => {
                let split = self.options.partition.as_ref().map_or(0, |partition| {
                    (self.options.nodes as f64 * partition.split).round() as usize
                });
                self.trace
                    .line(now, "partition_start", format_args!("\"split\":{split}"));
                self.network.partition = Some(split);
            }
            Event::PartitionEnd => {
                self.trace.line(now, "partition_end", "\"split\":null");
                self.network.partition = None;
                self.stats.heal_at = Some(now);
                self.stats.note_tips(now);
            }
            Event::ChurnLeave => self.churn_leave(now),
            Event::ChurnReturn { node } => {
                if !self.killed[node] {
                    self.trace
                        .line(now, "churn_return", format_args!("\"node\":{node}"));
                    self.network.offline[node] = false;
                }
            }
            Event::Kill => self.kill(now),
            Event::Sample => {
                self.stats.note_tips(now);
                self.scheduler.after(SECOND, Event::Sample);
            }
        }
    }

    fn feed(&mut self, node: usize, input: Input) {
        let now = self.scheduler.now();
        self.nodes[node].feed(now, input);
        self.after_feed(node);
    }

    /// Routes what a node asked for, records what it observed, and
    /// schedules its next wake-up.
    fn after_feed(&mut self, node: usize) {
        let now = self.scheduler.now();
        // Swapped with spare lists, so no list is allocated per input.
        let mut outbound = std::mem::take(&mut self.spare_outbound);
        std::mem::swap(&mut outbound, &mut self.nodes[node].outbound);
        for item in outbound.drain(..) {
            self.route(node, item, now);
        }
        self.spare_outbound = outbound;
        let mut observed = std::mem::take(&mut self.spare_observed);
        std::mem::swap(&mut observed, &mut self.nodes[node].observed);
        for item in observed.drain(..) {
            match item {
                Observed::HasBlock(hash) => {
                    self.trace.line(
                        now,
                        "has_block",
                        format_args!("\"node\":{node},\"block\":\"{hash}\""),
                    );
                    self.stats.node_has_block(node, &hash, now)
                }
                Observed::Tip { old, new } => {
                    self.trace.line(
                        now,
                        "tip",
                        format_args!("\"node\":{node},\"old\":\"{old}\",\"new\":\"{new}\""),
                    );
                    self.stats.tip_moved(old, new, now)
                }
                Observed::Reorg { depth } => {
                    self.trace.line(
                        now,
                        "reorg",
                        format_args!("\"node\":{node},\"depth\":{depth}"),
                    );
                    self.stats.reorg(depth)
                }
                Observed::BlockFrom { hash, conn } => {
                    if let Some(end) = self.network.end(node, conn) {
                        self.stats.block_hop(&hash, node, end.peer);
                    }
                }
                Observed::HasTx(txid) => {
                    self.trace.line(
                        now,
                        "has_tx",
                        format_args!("\"node\":{node},\"tx\":\"{txid}\""),
                    );
                    self.stats.node_has_tx(node, &txid, now)
                }
            }
        }
        self.spare_observed = observed;
        let wake = self.nodes[node].next_timer().max(now);
        self.timers.set(node, wake);
        if !self.idle_queued[node] && self.nodes[node].has_pending_announcements() {
            self.idle_queued[node] = true;
            self.scheduler.at(now, Event::Idle { node });
        }
    }

    fn route(&mut self, from: usize, item: Outbound, now: SimTime) {
        match item {
            Outbound::Dial { conn, target } => {
                let Some(to) = self.network.resolve(&target) else {
                    self.scheduler.at(
                        now,
                        Event::DialFailed {
                            node: from,
                            conn,
                            error: "address did not resolve",
                        },
                    );
                    return;
                };
                let latency = self.network.draw_latency(from, to, &mut self.rng);
                self.trace.line(
                    now,
                    "dial",
                    format_args!(
                        "\"node\":{from},\"conn\":{},\"to\":{to},\"latency_ns\":{latency}",
                        conn.0
                    ),
                );
                if self.network.offline[from] || self.network.offline[to] {
                    self.scheduler.at(
                        now + 2 * latency,
                        Event::DialFailed {
                            node: from,
                            conn,
                            error: "connection refused",
                        },
                    );
                } else if !self.network.reachable(from, to) {
                    self.scheduler.at(
                        now + self.connect_timeout,
                        Event::DialFailed {
                            node: from,
                            conn,
                            error: "connect timed out",
                        },
                    );
                } else {
                    let remote = self.network.start_dial(from, conn, to, latency);
                    self.scheduler
                        .at(now + latency, Event::Inbound { node: to, remote });
                }
            }
            Outbound::Admit { conn, remote } => {
                if let Some((dialer, dialer_conn, latency)) = self.network.admit(from, conn, remote)
                {
                    self.trace.line(
                        now,
                        "connected",
                        format_args!(
                            "\"node\":{from},\"conn\":{},\"dialer\":{dialer},\"dialer_conn\":{}",
                            conn.0, dialer_conn.0
                        ),
                    );
                    self.scheduler.at(
                        now,
                        Event::Secured {
                            node: from,
                            conn,
                            peer: dialer,
                        },
                    );
                    self.scheduler.at(
                        now + latency,
                        Event::Connected {
                            node: dialer,
                            conn: dialer_conn,
                            remote: node_addr(from),
                        },
                    );
                }
            }
            Outbound::Refuse { remote } => {
                if let Some((dialer, dialer_conn, latency)) = self.network.refuse(from, remote) {
                    self.scheduler.at(
                        now + latency,
                        Event::DialFailed {
                            node: dialer,
                            conn: dialer_conn,
                            error: "refused",
                        },
                    );
                }
            }
            Outbound::Frame {
                conn,
                kind,
                payload,
            } => {
                let Some(end) = self.network.end(from, conn) else {
                    self.stats.dropped_closed += 1;
                    return;
                };
                // Length prefix plus payload: what goes on the wire.
                let bytes = payload.len() + 4;
                self.stats.sent[kind] += 1;
                self.stats.sent_bytes[kind] += bytes as u64;
                let fate = if !self.network.reachable(from, end.peer) {
                    self.stats.dropped_partition += 1;
                    Err("partition")
                } else if self.network.loss > 0.0 && self.rng.gen::<f64>() < self.network.loss {
                    self.stats.dropped_loss += 1;
                    Err("loss")
                } else {
                    Ok(self.network.transmit(from, now, bytes, end.latency))
                };
                if self.trace.enabled() {
                    let outcome = match fate {
                        Ok(arrival) => format!("\"arrives_ns\":{arrival}"),
                        Err(reason) => format!("\"dropped\":\"{reason}\""),
                    };
                    self.trace.line(
                        now,
                        "send",
                        format_args!(
                            "\"node\":{from},\"to\":{},\"kind\":\"{}\",\"bytes\":{bytes},{outcome}",
                            end.peer, KINDS[kind]
                        ),
                    );
                }
                let Ok(arrival) = fate else {
                    return;
                };
                self.scheduler.at(
                    arrival,
                    Event::Deliver {
                        node: end.peer,
                        conn: end.peer_conn,
                        payload,
                    },
                );
            }
            Outbound::Disconnect { conn } => {
                if let Some(end) = self.network.remove_end(from, conn) {
                    self.trace.line(
                        now,
                        "disconnect",
                        format_args!("\"node\":{from},\"conn\":{},\"peer\":{}", conn.0, end.peer),
                    );
                    self.scheduler.at(
                        now + end.latency,
                        Event::Closed {
                            node: end.peer,
                            conn: end.peer_conn,
                        },
                    );
                }
            }
        }
    }

    /// Draws an exponential delay with mean `mean` (nanoseconds).
    fn exponential(rng: &mut ChaCha8Rng, mean: f64) -> SimTime {
        let uniform: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
        (-uniform.ln() * mean) as SimTime
    }

    fn schedule_mining(&mut self) {
        let mean = self.options.block_time.as_nanos() as f64;
        let delay = World::exponential(&mut self.oracle_rng, mean).max(1);
        self.scheduler.after(delay, Event::Mine);
    }

    fn schedule_tx(&mut self) {
        let mean = SECOND as f64 / self.options.tx_rate;
        let delay = World::exponential(&mut self.oracle_rng, mean).max(1);
        self.scheduler.after(delay, Event::Tx);
    }

    /// The oracle says a block was found: by which miner, in proportion
    /// to its share of the hash power.
    fn mine(&mut self, now: SimTime) {
        let draw: f64 = self.oracle_rng.gen();
        let mut total = 0.0;
        let mut miner = self.options.miners.len() - 1;
        for (index, share) in self.options.miners.iter().enumerate() {
            total += share;
            if draw < total {
                miner = index;
                break;
            }
        }
        let node = self.miner_nodes[miner];
        let address = self.miner_addrs[miner];
        // A killed miner's hash power left with it: the draw finds nothing.
        if self.killed[node] {
            self.schedule_mining();
            return;
        }
        if let Some(hash) = self.nodes[node].mine(now, address) {
            self.trace.line(
                now,
                "mined",
                format_args!("\"node\":{node},\"block\":\"{hash}\""),
            );
            self.stats.block_mined(hash, now);
            self.stats.block_hop_origin(&hash, node);
        }
        self.after_feed(node);
        self.schedule_mining();
    }

    /// A wallet sends a tx to a node drawn at random.
    fn submit_tx(&mut self, now: SimTime) {
        let node = self.oracle_rng.gen_range(0..self.nodes.len());
        let tx = self
            .wallets
            .next_tx(&self.genesis, self.spec.min_fee, &mut self.oracle_rng);
        let txid = tx.txid();
        if self.network.offline[node] {
            self.stats.txs_refused_at_origin += 1;
            self.wallets.refused();
        } else {
            let result = self.nodes[node].submit_tx(now, tx);
            self.trace.line(
                now,
                "tx",
                format_args!(
                    "\"node\":{node},\"tx\":\"{txid}\",\"accepted\":{}",
                    result.is_ok()
                ),
            );
            match result {
                Ok(()) => {
                    self.stats.tx_submitted(txid, now);
                    self.wallets.sent();
                }
                Err(error) => {
                    tracing::debug!(%error, "a simulated tx was refused");
                    self.stats.txs_refused_at_origin += 1;
                    self.wallets.refused();
                }
            }
            self.after_feed(node);
        }
        self.schedule_tx();
    }
}

/// A finished run.
pub struct Outcome {
    pub report: Report,
    /// Every (block, node) first-arrival delay, sorted: the CDF's samples.
    pub block_delays_ms: Vec<f64>,
    /// Lines written to the trace, or why writing it failed.
    pub trace: Result<u64, String>,
}
