//! Logging: installs the process-wide `tracing` subscriber, writing to
//! stderr (stdout carries only the banner), filtered by `--log` / `RUST_LOG`
//! and formatted as `pretty` text or one JSON object per line. Only the
//! binary calls this; the library never installs a subscriber, so tests and
//! embedders keep control of their own.

use crate::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("invalid --log filter {filter:?}: {reason}")]
    BadFilter { filter: String, reason: String },
    #[error("a log subscriber is already installed")]
    AlreadyInstalled,
}

/// Installs the subscriber once for the whole process.
pub fn init(filter: &str, format: LogFormat) -> Result<(), LoggingError> {
    let env_filter = EnvFilter::try_new(filter).map_err(|error| LoggingError::BadFilter {
        filter: filter.to_string(),
        reason: error.to_string(),
    })?;
    // Colour only for a person at a terminal: log files and `docker logs`
    // stay free of escape codes, and NO_COLOR is honoured.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|_| LoggingError::AlreadyInstalled)
}
