//! The same inputs and seed give the same actions.

use super::*;

// ------------------------------------------------------------- determinism

/// Runs a scripted session against a core: handshakes with three peers
/// (one claiming more work), announcements, a tx, addresses, timers.
/// Returns the inputs it fed, in order.
fn scripted_inputs(seed: u64) -> Vec<(Time, Input)> {
    let mut config = config("a", 7000);
    config.no_discovery = false;
    let (mut core, _) = core_with(config, seed);
    let mut inputs = Vec::new();
    let mut feed = |core: &mut NetworkState<FakeChain>, now: Time, input: Input| {
        inputs.push((now, input.clone()));
        core.handle(now, input);
        drain(core)
    };
    for (index, name) in ["p1", "p2", "p3"].into_iter().enumerate() {
        let mut remote = Remote::new(name, 9001 + index as u16);
        remote.work = index as u64 * 3;
        let now = at(index as u64 * 10);
        let actions = feed(
            &mut core,
            now,
            Input::Inbound {
                remote: remote.addr,
            },
        );
        let conn = admitted(&actions).expect("admitted");
        let Some(Message::Hello(_)) = sent_to(&actions, conn).into_iter().next() else {
            panic!("hello first");
        };
        feed(&mut core, now, remote.secured(conn));
        feed(
            &mut core,
            now,
            Input::Frame {
                conn,
                message: Message::Hello(Box::new(remote.hello())),
            },
        );
        feed(
            &mut core,
            now,
            Input::Frame {
                conn,
                message: Message::HelloAck(HelloAck {}),
            },
        );
        let addrs = (0..30u8)
            .map(|n| PeerAddr {
                addr: SocketAddr::from(([10, index as u8, 0, n], 7070)),
                node_id: None,
                last_seen_ms: now.unix_ms,
                connected: n % 2 == 0,
            })
            .collect();
        feed(
            &mut core,
            now,
            Input::Frame {
                conn,
                message: Message::Addr(addrs),
            },
        );
        let items = (0..5).map(|n| InvItem::Tx(tx(n).txid())).collect();
        feed(
            &mut core,
            now,
            Input::Frame {
                conn,
                message: Message::Inv(items),
            },
        );
    }
    for ms in (100..40_000).step_by(700) {
        feed(&mut core, at(ms), Input::Tick);
    }
    let event = NodeEvent::TxAccepted {
        tx: std::sync::Arc::new(tx(99)),
    };
    feed(&mut core, at(40_000), Input::Node(event));
    feed(&mut core, at(40_001), Input::Idle);
    inputs
}

fn replay(seed: u64, inputs: &[(Time, Input)]) -> Vec<String> {
    let mut config = config("a", 7000);
    config.no_discovery = false;
    let (mut core, _) = core_with(config, seed);
    let mut actions = Vec::new();
    for (now, input) in inputs {
        core.handle(*now, input.clone());
        actions.extend(drain(&mut core).iter().map(|action| format!("{action:?}")));
    }
    actions
}

#[test]
fn same_inputs_and_seed_give_the_same_actions() {
    let inputs = scripted_inputs(42);
    let first = replay(42, &inputs);
    let second = replay(42, &inputs);
    assert!(
        first.len() > 100,
        "the script exercises the core: {} actions",
        first.len()
    );
    assert!(first.iter().any(|action| action.starts_with("Dial")));
    assert!(first
        .iter()
        .any(|action| action.starts_with("Send") && action.contains("Ping")));
    assert_eq!(first, second);
    // Another seed: the script answers that core's own challenges, learns
    // the same addresses, and dials them in another order.
    let other = replay(43, &scripted_inputs(43));
    let dials = |actions: &[String]| -> Vec<String> {
        actions
            .iter()
            .filter(|action| action.starts_with("Dial"))
            .cloned()
            .collect()
    };
    assert_eq!(dials(&first).len(), dials(&other).len());
    assert_ne!(
        dials(&first),
        dials(&other),
        "another seed dials in another order"
    );
}
