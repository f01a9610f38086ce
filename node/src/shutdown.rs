//! Waiting for the signals that stop the node: SIGINT (Ctrl-C) and SIGTERM
//! (what `docker stop` and process supervisors send). The node then stops
//! mining, closes peers and flushes storage (see `RunningNode::shutdown`).

/// Resolves at the first SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // Without a SIGINT handler, wait for SIGTERM alone.
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
