//! The signals that stop the node: SIGINT (Ctrl-C) and SIGTERM (what
//! `docker stop` and process supervisors send). Handlers are installed
//! before the banner is printed, so a supervisor that signals as soon as it
//! sees the banner still gets a graceful stop (stop mining, close peers,
//! flush storage; see `RunningNode::shutdown`) rather than the default
//! action of dying on the spot.

/// Installed signal handlers; `recv` resolves at the first signal.
pub struct StopSignals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Installs the handlers (needs a tokio runtime with I/O enabled).
    pub fn install() -> std::io::Result<StopSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(StopSignals {
                terminate: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    /// Waits for SIGINT or SIGTERM.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
