//! Runs the real `wallet-cli` binary for everything that needs no node:
//! creating, importing and listing keys, resolving addresses, and the
//! failures that must happen before (or instead of) talking to a node:
//! usage errors exit 2 with nothing sent, a wrong password exits 6 with the
//! keystore unchanged, and a node that is down or silent exits 5 within the
//! timeout.

use serde_json::Value;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct horse";

/// The binary with a known password, no color, no terminal, and no stray
/// settings from the environment of whoever runs the tests.
fn wallet_bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wallet-cli"));
    command
        .env("LEDGER_PASSWORD", PASSWORD)
        .env("NO_COLOR", "1")
        .env_remove("LEDGER_RPC_URL")
        .env_remove("LEDGER_PASSWORD_FILE")
        .env_remove("LEDGER_KEYSTORE")
        .stdin(Stdio::null());
    command
}

/// `wallet_bin` with a private keystore.
fn wallet(keystore: &Path) -> Command {
    let mut command = wallet_bin();
    command.arg("--keystore").arg(keystore);
    command
}

fn run(command: &mut Command) -> Output {
    command.output().expect("the wallet binary runs")
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exited normally")
}

fn stdout_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "stdout is not JSON ({error}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A listener that never accepts: requests to it connect (the kernel
/// queues them) and then hear nothing. Also tells whether anyone connected.
fn silent_listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

fn nobody_connected(listener: &TcpListener) -> bool {
    matches!(listener.accept(), Err(error) if error.kind() == std::io::ErrorKind::WouldBlock)
}

/// A URL whose port has nothing listening.
fn closed_url() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}

#[test]
fn new_list_address_and_reopen() {
    let temp = tempfile::tempdir().unwrap();
    let keys = temp.path().join("keys");

    let created = run(wallet(&keys).args(["--json", "new", "alice"]));
    assert_eq!(code(&created), 0, "{}", stderr(&created));
    let created = stdout_json(&created);
    assert_eq!(created["name"], "alice");
    let address = created["address"].as_str().unwrap().to_string();
    assert!(address.starts_with("dev1q"), "{address}");

    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&keys), 0o700);
    assert_eq!(mode(&keys.join("alice.json")), 0o600);

    // Another run (another process) sees the same key.
    let shown = run(wallet(&keys).args(["--json", "address", "alice"]));
    assert_eq!(code(&shown), 0);
    assert_eq!(stdout_json(&shown), created);
    let plain = run(wallet(&keys).args(["address", "alice"]));
    assert_eq!(String::from_utf8_lossy(&plain.stdout).trim(), address);

    let listed = run(wallet(&keys).args(["--json", "list"]));
    assert_eq!(
        stdout_json(&listed),
        serde_json::json!([{"name": "alice", "address": address}])
    );

    // The same name twice is a keystore problem, and the key is kept.
    let before = std::fs::read(keys.join("alice.json")).unwrap();
    let again = run(wallet(&keys).args(["new", "alice"]));
    assert_eq!(code(&again), 6, "{}", stderr(&again));
    assert_eq!(std::fs::read(keys.join("alice.json")).unwrap(), before);

    // An unknown name is "not found".
    assert_eq!(code(&run(wallet(&keys).args(["address", "bob"]))), 3);
}

#[test]
fn import_dev_and_secret_file() {
    let temp = tempfile::tempdir().unwrap();
    let keys = temp.path().join("keys");

    let dev = run(wallet(&keys).args(["--json", "import", "d3", "--dev", "3"]));
    assert_eq!(code(&dev), 0, "{}", stderr(&dev));
    assert!(
        stderr(&dev).contains("public"),
        "dev keys come with the warning"
    );
    let expected = run(wallet(&keys).args(["--json", "address", "dev:3"]));
    assert_eq!(
        stdout_json(&dev)["address"],
        stdout_json(&expected)["address"]
    );
    assert_eq!(stdout_json(&expected)["name"], "dev:3");

    // The dev:5 secret, written as a file, imports to dev:5's address.
    let secret = ledger::chainspec::dev_secret_key(5).to_bytes();
    let secret_path = temp.path().join("secret.hex");
    std::fs::write(&secret_path, format!("{}\n", hex::encode(secret))).unwrap();
    let imported = run(wallet(&keys)
        .args(["--json", "import", "five", "--secret-file"])
        .arg(&secret_path));
    assert_eq!(code(&imported), 0, "{}", stderr(&imported));
    let dev5 = run(wallet(&keys).args(["--json", "address", "dev:5"]));
    assert_eq!(
        stdout_json(&imported)["address"],
        stdout_json(&dev5)["address"]
    );

    // Resolving an address finds the key's name.
    let address = stdout_json(&dev5)["address"].as_str().unwrap().to_string();
    let by_address = run(wallet(&keys).args(["--json", "address", &address]));
    assert_eq!(stdout_json(&by_address)["name"], "five");

    // The stored file holds neither the hex nor the raw secret.
    let file = std::fs::read(keys.join("five.json")).unwrap();
    assert!(!String::from_utf8_lossy(&file).contains(&hex::encode(secret)));
    assert!(!file.windows(32).any(|window| window == secret));

    let bad_secret = temp.path().join("bad.hex");
    std::fs::write(&bad_secret, "not hex").unwrap();
    let refused = run(wallet(&keys)
        .args(["import", "bad", "--secret-file"])
        .arg(&bad_secret));
    assert_eq!(code(&refused), 6);
}

#[test]
fn password_sources_and_failures() {
    let temp = tempfile::tempdir().unwrap();
    let keys = temp.path().join("keys");
    let password_file = temp.path().join("pw");
    std::fs::write(&password_file, "from a file\n").unwrap();

    let created = run(wallet(&keys)
        .env_remove("LEDGER_PASSWORD")
        .arg("--password-file")
        .arg(&password_file)
        .args(["new", "carol"]));
    assert_eq!(code(&created), 0, "{}", stderr(&created));

    // No terminal and no password: a clear error, exit 6, no hang.
    let no_password = run(wallet(&keys)
        .env_remove("LEDGER_PASSWORD")
        .args(["new", "dave"]));
    assert_eq!(code(&no_password), 6);
    assert!(
        stderr(&no_password).contains("LEDGER_PASSWORD"),
        "{}",
        stderr(&no_password)
    );
    assert!(!keys.join("dave.json").exists());

    // A wrong password exits 6 before any node is contacted, and the key
    // file is unchanged.
    let before = std::fs::read(keys.join("carol.json")).unwrap();
    let (listener, url) = silent_listener();
    let wrong = run(wallet(&keys).env("LEDGER_PASSWORD", "not it").args([
        "--rpc-url",
        &url,
        "send",
        "--from",
        "carol",
        "--to",
        "dev:1",
        "--amount",
        "1",
    ]));
    assert_eq!(code(&wrong), 6, "{}", stderr(&wrong));
    assert!(
        stderr(&wrong).contains("wrong password"),
        "{}",
        stderr(&wrong)
    );
    assert_eq!(std::fs::read(keys.join("carol.json")).unwrap(), before);
    assert!(nobody_connected(&listener));
}

#[test]
fn usage_errors_exit_2_and_send_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let keys = temp.path().join("keys");
    let (listener, url) = silent_listener();

    let good = run(wallet(&keys).args(["address", "dev:2"]));
    let good = String::from_utf8_lossy(&good.stdout).trim().to_string();
    // Change one character of the data part.
    let mut chars: Vec<char> = good.chars().collect();
    let position = chars.len() - 10;
    chars[position] = if chars[position] == 'x' { 'y' } else { 'x' };
    let typo: String = chars.into_iter().collect();

    let send = |to: &str, amount: &str| {
        run(wallet(&keys).args([
            "--rpc-url",
            &url,
            "send",
            "--from",
            "dev:0",
            "--to",
            to,
            "--amount",
            amount,
        ]))
    };
    let mistyped = send(&typo, "1");
    assert_eq!(code(&mistyped), 2);
    assert!(
        stderr(&mistyped).contains("not a valid address"),
        "{}",
        stderr(&mistyped)
    );

    let too_precise = send(&good, "1.000000001");
    assert_eq!(code(&too_precise), 2);
    assert!(
        stderr(&too_precise).contains("8 decimal places"),
        "{}",
        stderr(&too_precise)
    );

    assert_eq!(code(&send(&good, "0")), 2);
    assert_eq!(code(&send(&good, "-1")), 2);
    assert_eq!(code(&send("dev:10", "1")), 2);
    let long_memo = run(wallet(&keys).args([
        "--rpc-url",
        &url,
        "send",
        "--from",
        "dev:0",
        "--to",
        &good,
        "--amount",
        "1",
        "--memo",
        &"m".repeat(65),
    ]));
    assert_eq!(code(&long_memo), 2);
    assert!(
        nobody_connected(&listener),
        "a usage error must not reach the node"
    );

    assert_eq!(code(&run(wallet(&keys).args(["balance", &typo]))), 2);
    assert_eq!(code(&run(wallet(&keys).args(["tx", "abc"]))), 2);
    assert_eq!(code(&run(wallet(&keys).args(["bogus"]))), 2);

    // With --json a failure also prints an error object on stdout.
    let json_failure = run(wallet(&keys).args(["--json", "address", &typo]));
    assert_eq!(code(&json_failure), 2);
    assert_eq!(stdout_json(&json_failure)["error"]["code"], "usage");
}

#[test]
fn node_down_or_silent_exits_5_within_the_timeout() {
    let temp = tempfile::tempdir().unwrap();
    let keys = temp.path().join("keys");

    let started = Instant::now();
    let down = run(wallet(&keys).args(["--rpc-url", &closed_url(), "status"]));
    assert_eq!(code(&down), 5, "{}", stderr(&down));
    assert!(stderr(&down).contains("cannot reach"), "{}", stderr(&down));

    let (_listener, url) = silent_listener();
    let silent =
        run(wallet(&keys).args(["--rpc-url", &url, "--rpc-timeout", "1", "balance", "dev:0"]));
    assert_eq!(code(&silent), 5, "{}", stderr(&silent));
    let send = run(wallet(&keys).args([
        "--rpc-url",
        &url,
        "--rpc-timeout",
        "1",
        "--json",
        "send",
        "--from",
        "dev:0",
        "--to",
        "dev:1",
        "--amount",
        "1",
    ]));
    assert_eq!(code(&send), 5, "{}", stderr(&send));
    assert_eq!(stdout_json(&send)["error"]["code"], "timeout");
    // Three commands, two of them with a 1 s timeout, well under 10 s.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn default_keystore_is_in_the_user_data_dir() {
    let temp = tempfile::tempdir().unwrap();
    let xdg = temp.path().join("xdg");
    let created = run(wallet_bin().env("XDG_DATA_HOME", &xdg).args(["new", "k1"]));
    assert_eq!(code(&created), 0, "{}", stderr(&created));
    assert!(xdg.join("gossip-ledger/keystore/k1.json").is_file());

    let home = temp.path().join("home");
    let created = run(wallet_bin()
        .env_remove("XDG_DATA_HOME")
        .env("HOME", &home)
        .args(["new", "k2"]));
    assert_eq!(code(&created), 0, "{}", stderr(&created));
    assert!(home
        .join(".local/share/gossip-ledger/keystore/k2.json")
        .is_file());
}
