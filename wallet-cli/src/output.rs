//! Terminal output: data goes to stdout (plain text, or JSON with `--json`),
//! messages, warnings, errors and the spinner go to stderr, so a pipeline
//! sees only data. Color is used only when stderr is a terminal and
//! `NO_COLOR` is unset or empty (https://no-color.org), and the spinner
//! only on a terminal.

use ledger::Amount;
use std::io::{IsTerminal, Write};
use std::time::Instant;

/// Where and how a command reports.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    pub json: bool,
    color: bool,
    stderr_tty: bool,
}

const RED: &str = "\x1b[31m";
const YELLOW: &str = "\x1b[33m";
const GREEN: &str = "\x1b[32m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// Whether color is allowed, given `NO_COLOR` and whether stderr is a TTY.
pub fn color_allowed(no_color: Option<&std::ffi::OsStr>, is_tty: bool) -> bool {
    is_tty
        && match no_color {
            None => true,
            Some(value) => value.is_empty(),
        }
}

impl Output {
    pub fn new(json: bool) -> Output {
        let stderr_tty = std::io::stderr().is_terminal();
        Output {
            json,
            color: color_allowed(std::env::var_os("NO_COLOR").as_deref(), stderr_tty),
            stderr_tty,
        }
    }

    fn paint(&self, style: &str, text: &str) -> String {
        if self.color {
            format!("{style}{text}{RESET}")
        } else {
            text.to_string()
        }
    }

    /// A progress or context message on stderr.
    pub fn info(&self, message: &str) {
        eprintln!("{message}");
    }

    pub fn success(&self, message: &str) {
        eprintln!("{}", self.paint(GREEN, message));
    }

    /// A line that must stand out (the dev-keys warning), without a prefix.
    pub fn notice(&self, message: &str) {
        eprintln!("{}", self.paint(YELLOW, message));
    }

    pub fn warn(&self, message: &str) {
        eprintln!("{} {message}", self.paint(YELLOW, "warning:"));
    }

    pub fn error(&self, message: &str) {
        eprintln!(
            "{} {message}",
            self.paint(&format!("{BOLD}{RED}"), "error:")
        );
    }

    /// One line of plain data on stdout.
    pub fn line(&self, text: &str) {
        let mut stdout = std::io::stdout().lock();
        // A closed pipe (`| head`) is not worth a panic.
        let _ = writeln!(stdout, "{text}");
    }

    /// Aligned `label  value` lines on stdout.
    pub fn fields(&self, rows: &[(&str, String)]) {
        let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
        for (label, value) in rows {
            self.line(&format!("{label:<width$}  {value}"));
        }
    }

    /// A JSON document on stdout.
    pub fn json_value(&self, value: &serde_json::Value) {
        let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into());
        self.line(&text);
    }

    /// A spinner on stderr that does nothing unless stderr is a terminal.
    pub fn spinner(&self, message: String) -> Spinner {
        Spinner {
            enabled: self.stderr_tty,
            message,
            frame: 0,
            started: Instant::now(),
        }
    }
}

/// A one-line progress indicator, advanced by `tick` from the waiting loop.
pub struct Spinner {
    enabled: bool,
    message: String,
    frame: usize,
    started: Instant,
}

impl Spinner {
    const FRAMES: [char; 4] = ['|', '/', '-', '\\'];

    pub fn tick(&mut self) {
        if !self.enabled {
            return;
        }
        let frame = Self::FRAMES[self.frame % Self::FRAMES.len()];
        self.frame += 1;
        let mut stderr = std::io::stderr().lock();
        let _ = write!(
            stderr,
            "\r{frame} {} ({}s)",
            self.message,
            self.started.elapsed().as_secs()
        );
        let _ = stderr.flush();
    }

    pub fn finish(&mut self) {
        if self.enabled {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K");
            let _ = stderr.flush();
            self.enabled = false;
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.finish();
    }
}

/// "1.5 coins (150000000 base units)".
pub fn coins(amount: Amount) -> String {
    let coin_word = if amount.base_units() == ledger::amount::COIN {
        "coin"
    } else {
        "coins"
    };
    let unit_word = if amount.base_units() == 1 {
        "base unit"
    } else {
        "base units"
    };
    format!(
        "{} {coin_word} ({} {unit_word})",
        amount.to_coins_string(),
        amount.base_units()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_color_is_honoured() {
        use std::ffi::OsStr;
        assert!(color_allowed(None, true));
        assert!(color_allowed(Some(OsStr::new("")), true));
        assert!(!color_allowed(Some(OsStr::new("1")), true));
        assert!(!color_allowed(None, false));
    }

    #[test]
    fn amounts_show_coins_and_base_units() {
        assert_eq!(
            coins(Amount::from_base_units(1)),
            "0.00000001 coins (1 base unit)"
        );
        assert_eq!(
            coins(Amount::from_base_units(150_000_000)),
            "1.5 coins (150000000 base units)"
        );
        assert_eq!(
            coins(Amount::from_base_units(100_000_000)),
            "1 coin (100000000 base units)"
        );
    }
}
