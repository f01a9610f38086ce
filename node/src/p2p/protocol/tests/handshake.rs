//! The handshake session and ping liveness.

use super::*;

// --------------------------------------------------------------- handshake

#[test]
fn handshake_with_a_good_peer_authenticates_it() {
    let (mut core, _) = core("a");
    let remote = Remote::new("r", 9001);
    let (conn, ours) = remote.connect(&mut core, at(0));
    assert_eq!(ours.node_id, SecretKey::from_seed("a").public_key());
    core.handle(
        at(1),
        Input::Frame {
            conn,
            message: Message::Hello(Box::new(remote.hello())),
        },
    );
    let actions = drain(&mut core);
    let replies = sent_to(&actions, conn);
    assert_eq!(replies, vec![Message::HelloAck(HelloAck {})]);
    assert_eq!(core.n_ready(), 0);
    core.handle(
        at(2),
        Input::Frame {
            conn,
            message: Message::HelloAck(HelloAck {}),
        },
    );
    let actions = drain(&mut core);
    assert!(actions
        .iter()
        .any(|action| matches!(action, Action::Authenticated { conn: c } if *c == conn)));
    assert_eq!(sent_to(&actions, conn), vec![Message::GetAddr]);
    assert_eq!(core.n_ready(), 1);
}

fn handshake_refusal(tamper: impl FnOnce(&mut Hello)) -> Vec<Action> {
    let (mut core, _) = core("a");
    let remote = Remote::new("r", 9001);
    let (conn, _) = remote.connect(&mut core, at(0));
    let mut hello = remote.hello();
    tamper(&mut hello);
    core.handle(
        at(1),
        Input::Frame {
            conn,
            message: Message::Hello(Box::new(hello)),
        },
    );
    let mut actions = drain(&mut core);
    core.handle(
        at(2),
        Input::Frame {
            conn,
            message: Message::HelloAck(HelloAck {}),
        },
    );
    actions.extend(drain(&mut core));
    assert_eq!(core.n_ready(), 0);
    actions
}

#[test]
fn wrong_magic_is_banned() {
    let actions = handshake_refusal(|hello| hello.magic = NetworkMagic(*b"nope"));
    assert_eq!(disconnect_reason(&actions, ConnId(1)), Some("misbehaved"));
    assert_eq!(counted(&actions, "p2p_bans_total", "wrong_magic"), 1);
    assert!(actions
        .iter()
        .any(|action| matches!(action, Action::Store(BookChange::PutBan { .. }))));
}

#[test]
fn wrong_genesis_is_banned() {
    let actions = handshake_refusal(|hello| {
        hello.genesis_hash = BlockHash(Hash256::digest(b"another chain"))
    });
    assert_eq!(counted(&actions, "p2p_bans_total", "wrong_genesis"), 1);
}

#[test]
fn a_hello_naming_another_node_than_the_transport_proved_is_banned() {
    let actions = handshake_refusal(|hello| {
        hello.node_id = SecretKey::from_seed("someone else").public_key()
    });
    assert_eq!(counted(&actions, "p2p_bans_total", "bad_handshake"), 1);
}

#[test]
fn a_hello_before_the_transport_proved_the_peer_is_a_violation() {
    let (mut core, _) = core("a");
    let remote = Remote::new("r", 9001);
    core.handle(
        at(0),
        Input::Inbound {
            remote: remote.addr,
        },
    );
    drain(&mut core);
    core.handle(
        at(1),
        Input::Frame {
            conn: ConnId(1),
            message: Message::Hello(Box::new(remote.hello())),
        },
    );
    let actions = drain(&mut core);
    assert_eq!(counted(&actions, "p2p_bans_total", "protocol_violation"), 1);
    assert_eq!(core.n_ready(), 0);
}

#[test]
fn a_failed_secure_transport_is_counted_and_never_banned() {
    let (mut core, _) = core("a");
    let remote = Remote::new("r", 9001);
    core.handle(
        at(0),
        Input::Inbound {
            remote: remote.addr,
        },
    );
    drain(&mut core);
    core.handle(
        at(1),
        Input::Closed {
            conn: ConnId(1),
            cause: CloseCause::Insecure {
                reason: "bad_identity",
                detail: "signature over the static key does not verify".into(),
            },
        },
    );
    let actions = drain(&mut core);
    assert_eq!(
        counted(&actions, "p2p_disconnects_total", "bad_identity"),
        1
    );
    assert!(!actions
        .iter()
        .any(|action| matches!(action, Action::Store(BookChange::PutBan { .. }))));
}

#[test]
fn another_protocol_version_is_refused_without_a_ban() {
    let actions = handshake_refusal(|hello| hello.protocol_version += 1);
    assert_eq!(disconnect_reason(&actions, ConnId(1)), Some("closed"));
    assert_eq!(counted(&actions, "p2p_bans_total", "protocol_violation"), 0);
    assert!(!actions
        .iter()
        .any(|action| matches!(action, Action::Store(BookChange::PutBan { .. }))));
}

#[test]
fn self_connection_is_dropped_and_remembered() {
    let (mut core, _) = core("a");
    let mut me = Remote::new("a", 7000);
    me.addr = SocketAddr::from(([127, 0, 0, 1], 7000));
    let (_, _) = me.join(&mut core, at(0));
    assert_eq!(core.n_ready(), 0);
    assert!(core.self_addrs.contains(&me.addr));
}

#[test]
fn a_second_connection_from_one_node_is_refused() {
    let (mut core, _) = core("a");
    let remote = Remote::new("r", 9001);
    let (first, _) = remote.join(&mut core, at(0));
    let again = Remote::new("r", 9002);
    let (second, actions) = again.join(&mut core, at(1));
    assert_eq!(disconnect_reason(&actions, second), Some("duplicate"));
    assert_eq!(core.n_ready(), 1);
    assert!(core
        .conns
        .get(&first)
        .is_some_and(|conn| conn.peer.is_some()));
}

#[test]
fn a_message_before_the_handshake_is_a_violation() {
    let (mut core, _) = core("a");
    core.handle(
        at(0),
        Input::Inbound {
            remote: Remote::new("r", 9001).addr,
        },
    );
    drain(&mut core);
    core.handle(
        at(1),
        Input::Frame {
            conn: ConnId(1),
            message: Message::GetAddr,
        },
    );
    let actions = drain(&mut core);
    assert_eq!(counted(&actions, "p2p_bans_total", "protocol_violation"), 1);
}

#[test]
fn silent_peer_is_dropped_at_the_handshake_timeout() {
    let (mut core, _) = core("a");
    core.handle(
        at(0),
        Input::Inbound {
            remote: Remote::new("r", 9001).addr,
        },
    );
    drain(&mut core);
    assert_eq!(core.next_timer(), Mono::ZERO, "maintenance first");
    core.handle(at(9_999), Input::Tick);
    assert_eq!(disconnect_reason(&drain(&mut core), ConnId(1)), None);
    core.handle(at(10_000), Input::Tick);
    let actions = drain(&mut core);
    assert_eq!(
        disconnect_reason(&actions, ConnId(1)),
        Some("handshake_timeout")
    );
    assert_eq!(counted(&actions, "p2p_bans_total", "handshake_timeout"), 0);
}

// ---------------------------------------------------------------- liveness

#[test]
fn peer_that_stops_answering_pings_is_dropped_after_three_misses() {
    let (mut core, _) = core("a");
    let (conn, _) = Remote::new("r", 9001).join(&mut core, at(0));
    core.handle(at(1_000), Input::Tick);
    let actions = drain(&mut core);
    let pings = sent_to(&actions, conn);
    let [Message::Ping(nonce)] = pings.as_slice() else {
        panic!("a ping after a second: {actions:?}");
    };
    // Answered: no miss, and the round trip is known.
    core.handle(
        at(1_040),
        Input::Frame {
            conn,
            message: Message::Pong(*nonce),
        },
    );
    drain(&mut core);
    assert_eq!(
        core.conns[&conn]
            .peer
            .as_ref()
            .and_then(|peer| peer.ping_ms),
        Some(40)
    );
    for (ms, dead) in [
        (31_000, false),
        (61_000, false),
        (91_000, false),
        (121_000, true),
    ] {
        core.handle(at(ms), Input::Tick);
        let actions = drain(&mut core);
        assert_eq!(
            disconnect_reason(&actions, conn) == Some("dead"),
            dead,
            "at {ms} ms"
        );
    }
}
