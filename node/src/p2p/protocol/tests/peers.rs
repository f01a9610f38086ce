//! Bans, dialing and backoff, address exchange, and DNS seeds.

use super::*;

// ----------------------------------------------------- misbehaviour, bans

#[test]
fn each_misbehaviour_bans_with_its_reason() {
    type Misbehaviour = Box<dyn Fn(ConnId) -> Input>;
    let cases: Vec<(&str, Misbehaviour)> = vec![
        (
            "bad_tx",
            Box::new(|conn| Input::TxVerdict {
                from: conn,
                txid: tx(0).txid(),
                sender: tx(0).sender(),
                nonce: 0,
                verdict: TxVerdict::Rejected {
                    reason: "bad_signature".into(),
                    misbehaving: true,
                },
            }),
        ),
        (
            "bad_block",
            Box::new(|conn| Input::BlockVerdict {
                from: Some(conn),
                hash: BlockHash(Hash256::digest(b"b")),
                size: 10,
                verdict: BlockVerdict::Rejected {
                    reason: "bad pow".into(),
                    misbehaving: true,
                },
            }),
        ),
        (
            "oversized_frame",
            Box::new(|conn| Input::Closed {
                conn,
                cause: CloseCause::BadFrame {
                    reason: "oversized_frame",
                    detail: "5 MiB".into(),
                },
            }),
        ),
        (
            "protocol_violation",
            Box::new(|conn| Input::Frame {
                conn,
                message: Message::Hello(Box::new(Remote::new("p", 1).hello())),
            }),
        ),
    ];
    for (reason, input) in cases {
        let (mut core, _) = core("a");
        let remote = Remote::new("p", 9001);
        let (conn, _) = remote.join(&mut core, at(0));
        core.handle(at(1), input(conn));
        let actions = drain(&mut core);
        assert_eq!(counted(&actions, "p2p_bans_total", reason), 1, "{reason}");
        assert!(
            core.bans
                .is_banned(&BanKey::Node(remote.key.public_key()), at(2).mono),
            "{reason}"
        );
        // The banned node cannot come back, from any port.
        let mut again = Remote::new("p", 9005);
        again.addr = SocketAddr::from(([127, 0, 0, 3], 9005));
        let (conn, actions) = again.join(&mut core, at(3));
        assert_eq!(
            disconnect_reason(&actions, conn),
            Some("banned"),
            "{reason}"
        );
    }
    // An unaffordable tx is not misbehaviour.
    let (mut core, _) = core("a");
    let (conn, _) = Remote::new("p", 9001).join(&mut core, at(0));
    core.handle(
        at(1),
        Input::TxVerdict {
            from: conn,
            txid: tx(0).txid(),
            sender: tx(0).sender(),
            nonce: 0,
            verdict: TxVerdict::Rejected {
                reason: "insufficient_funds".into(),
                misbehaving: false,
            },
        },
    );
    assert_eq!(disconnect_reason(&drain(&mut core), conn), None);
}

#[test]
fn a_banned_address_is_refused_at_accept() {
    let (mut core, _) = core("a");
    let remote = Remote::new("p", 9001);
    let (conn, _) = remote.join(&mut core, at(0));
    core.handle(
        at(1),
        Input::Closed {
            conn,
            cause: CloseCause::BadFrame {
                reason: "undecodable_frame",
                detail: "junk".into(),
            },
        },
    );
    drain(&mut core);
    core.handle(
        at(2),
        Input::Inbound {
            remote: remote.addr,
        },
    );
    let actions = drain(&mut core);
    assert!(actions
        .iter()
        .any(|action| matches!(action, Action::Refuse { .. })));
    assert!(admitted(&actions).is_none());
    // The ban ends after its duration.
    core.handle(
        at(24 * 3600 * 1000 + 2),
        Input::Inbound {
            remote: remote.addr,
        },
    );
    assert!(admitted(&drain(&mut core)).is_some());
}

// ------------------------------------------------------------------ dialing

#[test]
fn bootstrap_peer_is_redialed_with_growing_jittered_backoff() {
    let mut config = config("a", 7000);
    config.peers = vec!["seed.example:7070".into()];
    let (mut core, _) = core_with(config, 3);
    let dials = |actions: &[Action]| -> Vec<ConnId> {
        actions
            .iter()
            .filter_map(|action| match action {
                Action::Dial { conn, target } if target == "seed.example:7070" => Some(*conn),
                _ => None,
            })
            .collect()
    };
    core.handle(at(0), Input::Tick);
    let mut conn = dials(&drain(&mut core))[0];
    let mut failed_at = 0;
    // After failure k the delay is 2^k s, jittered down by up to a
    // quarter (never below 1 s): the first redial comes in [1.5 s, 2 s].
    for (low, high) in [(1_500, 2_000), (3_000, 4_000), (6_000, 8_000)] {
        core.handle(
            at(failed_at),
            Input::DialFailed {
                conn,
                error: "refused".into(),
            },
        );
        drain(&mut core);
        let mut redial = None;
        let mut ms = failed_at;
        while redial.is_none() && ms <= failed_at + high + 500 {
            ms += 100;
            core.handle(at(ms), Input::Tick);
            redial = dials(&drain(&mut core)).first().copied();
        }
        let waited = ms - failed_at;
        assert!(
            (low..=high + 500).contains(&waited),
            "waited {waited} ms, expected {low}..{high}"
        );
        conn = redial.expect("redialed");
        failed_at = ms;
    }
}

/// `POST /v1/peers` cannot pin more peers than there are outbound slots,
/// nor dial past them.
#[test]
fn pinned_peers_take_outbound_slots_and_are_capped() {
    let mut config = config("a", 7000);
    config.max_outbound = 2;
    let (mut core, _) = core_with(config, 1);
    let dials = |core: &mut NetworkState<FakeChain>| -> Vec<(ConnId, String)> {
        drain(core)
            .into_iter()
            .filter_map(|action| match action {
                Action::Dial { conn, target } => Some((conn, target)),
                _ => None,
            })
            .collect()
    };
    let targets = |dialed: &[(ConnId, String)]| -> Vec<String> {
        dialed.iter().map(|(_, target)| target.clone()).collect()
    };
    for port in 1..=3 {
        let pin = Command::Dial(format!("192.0.2.1:{port}"));
        core.handle(at(0), Input::Command(pin));
    }
    let first = dials(&mut core);
    assert_eq!(
        targets(&first),
        ["192.0.2.1:1", "192.0.2.1:2"],
        "the third would pass max_outbound"
    );
    // A failed dial frees its slot; a new pin takes that target's place.
    let failed = Input::DialFailed {
        conn: first[0].0,
        error: "refused".into(),
    };
    core.handle(at(0), failed);
    core.handle(at(0), Input::Command(Command::Dial("192.0.2.1:9".into())));
    assert_eq!(targets(&dials(&mut core)), ["192.0.2.1:9"]);
    // Both pinned targets hold their slots: nothing more is dialed.
    core.handle(at(0), Input::Command(Command::Dial("192.0.2.1:10".into())));
    assert!(dials(&mut core).is_empty());
    // The driver tells the API which pins were refused.
    assert!(core.is_dial_target("192.0.2.1:9") && core.is_dial_target("192.0.2.1:2"));
    assert!(!core.is_dial_target("192.0.2.1:10") && !core.is_dial_target("192.0.2.1:3"));
}

/// An address book of 20 fresh addresses; returns the dial targets of the
/// first maintenance round.
fn first_dials(seed: u64) -> Vec<String> {
    let mut config = config("a", 7000);
    config.no_discovery = false;
    let addresses = (0..20u8)
        .map(|n| {
            let entry = addrbook::AddrEntry {
                node_id: None,
                last_seen_ms: at(0).unix_ms,
                failures: 0,
                retry_after_ms: 0,
                tried: false,
            };
            (SocketAddr::from(([10, 0, 0, n], 7070)), entry)
        })
        .collect();
    let restored = Restored {
        addresses,
        bans: Vec::new(),
    };
    let mut core = NetworkState::new(config, FakeChain::default(), seed, at(0), restored);
    core.handle(at(0), Input::Tick);
    drain(&mut core)
        .into_iter()
        .filter_map(|action| match action {
            Action::Dial { target, .. } => Some(target),
            _ => None,
        })
        .collect()
}

#[test]
fn outbound_slots_fill_from_the_book_in_an_order_the_seed_decides() {
    let dials = first_dials(7);
    assert_eq!(dials.len(), 8, "max_outbound");
    assert_eq!(dials, first_dials(7));
    assert_ne!(dials, first_dials(8));
}

#[test]
fn addresses_from_a_peer_are_rate_limited() {
    let (mut core, _) = core("a");
    let (conn, _) = Remote::new("p", 9001).join(&mut core, at(0));
    let addrs = |first: u8| -> Vec<PeerAddr> {
        (0..250u8)
            .map(|n| PeerAddr {
                addr: SocketAddr::from(([10, first, 0, n], 7070)),
                node_id: None,
                last_seen_ms: at(0).unix_ms,
                connected: false,
            })
            .collect()
    };
    for first in 0..8 {
        core.handle(
            at(1),
            Input::Frame {
                conn,
                message: Message::Addr(addrs(first)),
            },
        );
    }
    let actions = drain(&mut core);
    // A burst of 1,000 taken, then 0.1 per second; the book keeps what
    // fits the buckets of this one source (plus the peer's own listen
    // address, learned in the handshake) and counts the rest.
    let refused: u64 = actions
        .iter()
        .map(|action| match action {
            Action::Metric(MetricUpdate::Add { name, label, value })
                if *name == "p2p_addrs_refused_total" && label.1 == "bucket_full" =>
            {
                *value
            }
            _ => 0,
        })
        .sum();
    assert_eq!(core.book.len() as u64 - 1 + refused, 1_000);
    assert!(core.book.len() <= 16 * 32 + 1, "{}", core.book.len());
}

// -------------------------------------------------------------- dns seeds

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("literal address")
}

fn seed_core(
    max_outbound: usize,
    no_discovery: bool,
    external_addr: Option<SocketAddr>,
) -> NetworkState<FakeChain> {
    let mut config = config("seeded", 7070);
    config.listen_addr = addr("10.0.0.1:7070");
    config.dns_seeds = vec!["tasks.node:7070".into()];
    config.external_addr = external_addr;
    config.no_discovery = no_discovery;
    config.max_outbound = max_outbound;
    core_with(config, 7).0
}

/// Every `Dial` the core asks for, in order, as (conn, target).
fn seed_dials(core: &mut NetworkState<FakeChain>) -> Vec<(ConnId, String)> {
    drain(core)
        .into_iter()
        .filter_map(|action| match action {
            Action::Dial { conn, target } => Some((conn, target)),
            _ => None,
        })
        .collect()
}

#[test]
fn every_resolved_address_is_dialed_within_the_slots() {
    let mut core = seed_core(8, true, None);
    seed_dials(&mut core);
    let resolved: Vec<SocketAddr> = (2..=5)
        .map(|host| addr(&format!("10.0.0.{host}:7070")))
        .collect();
    core.handle(
        at(10),
        Input::SeedsResolved {
            addrs: resolved.clone(),
        },
    );
    let targets: Vec<String> = seed_dials(&mut core).into_iter().map(|(_, t)| t).collect();
    let expected: Vec<String> = resolved.iter().map(ToString::to_string).collect();
    assert_eq!(targets, expected, "all four, with discovery off too");

    // The same answer again: each is being dialed already, nothing new.
    core.handle(at(20), Input::SeedsResolved { addrs: resolved });
    assert!(seed_dials(&mut core).is_empty());
}

#[test]
fn seeds_respect_free_slots_and_skip_our_own_addresses() {
    let external = addr("203.0.113.9:17070");
    let mut core = seed_core(2, false, Some(external));
    seed_dials(&mut core);
    core.handle(
        at(10),
        Input::SeedsResolved {
            addrs: vec![
                addr("10.0.0.1:7070"), // our listener
                external,              // our advertised address
                addr("10.0.0.3:7070"),
                addr("10.0.0.4:7070"),
                addr("10.0.0.5:7070"),
            ],
        },
    );
    let first = seed_dials(&mut core);
    let targets: Vec<&str> = first.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(targets, ["10.0.0.3:7070", "10.0.0.4:7070"]);

    // One dial fails: its slot is free again, and the next resolution
    // tries the address not yet tried as well as the failed one.
    core.handle(
        at(20),
        Input::DialFailed {
            conn: first[0].0,
            error: "refused".into(),
        },
    );
    seed_dials(&mut core);
    core.handle(
        at(5_000),
        Input::SeedsResolved {
            addrs: vec![addr("10.0.0.3:7070"), addr("10.0.0.5:7070")],
        },
    );
    let targets: Vec<String> = seed_dials(&mut core).into_iter().map(|(_, t)| t).collect();
    assert_eq!(targets, ["10.0.0.3:7070"], "one slot was free");
}

#[test]
fn external_address_is_announced_and_offered_first() {
    let external = addr("203.0.113.9:17070");
    let mut core = seed_core(8, true, Some(external));
    seed_dials(&mut core);
    core.handle(
        at(1),
        Input::Inbound {
            remote: addr("10.0.0.9:40000"),
        },
    );
    let mut hello_port = None;
    while let Some(action) = core.poll_action() {
        if let Action::Send {
            message: Message::Hello(hello),
            ..
        } = action
        {
            hello_port = Some(hello.listen_port);
        }
    }
    assert_eq!(hello_port, Some(17070), "Hello names the external port");
    let own = core.advertised_self().expect("an external address is set");
    assert_eq!(own.addr, external);
    assert_eq!(own.node_id, Some(core.node_id()));
    assert!(!own.connected);
}

#[test]
fn addresses_are_refreshed_from_one_peer_a_round_and_not_without_discovery() {
    let getaddrs = |actions: &[Action]| -> Vec<ConnId> {
        actions
            .iter()
            .filter_map(|action| match action {
                Action::Send {
                    conn,
                    message: Message::GetAddr,
                } => Some(*conn),
                _ => None,
            })
            .collect()
    };
    for discovery in [true, false] {
        let (mut core, _) = core_with(
            ProtocolConfig {
                no_discovery: !discovery,
                ..config("refresher", 7000)
            },
            1,
        );
        let peers: Vec<ConnId> = (0..4)
            .map(|k| {
                Remote::new(&format!("peer{k}"), 9100 + k)
                    .join(&mut core, at(0))
                    .0
            })
            .collect();
        // Three refresh rounds, each a little past the interval.
        let mut asked = Vec::new();
        for round in 1..=3u64 {
            core.handle(at(round * 61_000), Input::Tick);
            asked.push(getaddrs(&drain(&mut core)));
        }
        if discovery {
            // One peer a round, a different one each time.
            assert!(asked.iter().all(|round| round.len() == 1), "{asked:?}");
            let mut distinct: Vec<ConnId> = asked.concat();
            distinct.sort();
            distinct.dedup();
            assert_eq!(distinct.len(), 3, "{asked:?}");
            assert!(distinct.iter().all(|id| peers.contains(id)));
        } else {
            assert!(asked.iter().all(Vec::is_empty), "{asked:?}");
        }
    }
}
