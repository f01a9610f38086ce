//! Child process supervision for `testnet up`: spawn each node with its
//! output in a log file, stop them with SIGTERM and, after a grace period,
//! SIGKILL, and make sure none outlives the launcher.
//!
//! Two mechanisms keep orphans away. Children run in their own process
//! group, so a Ctrl-C in the terminal reaches only the launcher, which then
//! stops them in order (instead of every process racing on the same signal).
//! And each child asks the kernel for SIGTERM when its parent dies
//! (`PR_SET_PDEATHSIG`, see [`die_with_parent`]), which covers the launcher
//! being SIGKILLed, when it can run no cleanup at all.

use rustix::process::{Pid, Signal};
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Environment variable through which the launcher tells a child its pid,
/// so the child can tell whether its parent already died before it asked
/// for the parent-death signal.
pub const PARENT_PID_ENV: &str = "TESTNET_PARENT_PID";

/// Why a child could not be started or signalled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    #[error("cannot open log file {path}: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start {name}: {source}")]
    Spawn {
        name: String,
        source: std::io::Error,
    },
    #[error("cannot signal {name} (pid {pid}): {source}")]
    Signal {
        name: String,
        pid: u32,
        source: std::io::Error,
    },
    #[error("{PARENT_PID_ENV} is not a process id: {0:?}")]
    BadParentPid(String),
    #[error("cannot set the parent-death signal: {0}")]
    DeathSignal(std::io::Error),
    #[error("the launcher (pid {0}) exited before this process started")]
    ParentGone(u32),
}

/// A running (or exited) child with a name for messages.
#[derive(Debug)]
pub struct Supervised {
    pub name: String,
    pub log_path: PathBuf,
    child: Child,
    exit: Option<ExitStatus>,
}

/// How a child ended when it was stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopOutcome {
    /// It had already exited before being asked to stop.
    AlreadyExited(ExitStatus),
    /// It exited after SIGTERM within the grace period.
    Terminated(ExitStatus),
    /// It ignored SIGTERM for the whole grace period and was killed.
    Killed,
}

impl Supervised {
    /// Starts `program args...` in its own process group with stdin closed
    /// and stdout and stderr appended to `log_path` (after a header line
    /// with the command), without the environment variables in `unset`,
    /// telling it our pid through [`PARENT_PID_ENV`].
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[OsString],
        unset: &[OsString],
        log_path: &Path,
    ) -> Result<Supervised, ProcessError> {
        let log_error = |source| ProcessError::Log {
            path: log_path.to_path_buf(),
            source,
        };
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .map_err(log_error)?;
        let command_line: Vec<String> = args
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        writeln!(
            log,
            "=== {name} starting: {} {}",
            program.display(),
            command_line.join(" ")
        )
        .map_err(log_error)?;
        let stderr: File = log.try_clone().map_err(log_error)?;
        let mut command = Command::new(program);
        for variable in unset {
            command.env_remove(variable);
        }
        let child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .env(PARENT_PID_ENV, std::process::id().to_string())
            .process_group(0)
            .spawn()
            .map_err(|source| ProcessError::Spawn {
                name: name.to_string(),
                source,
            })?;
        Ok(Supervised {
            name: name.to_string(),
            log_path: log_path.to_path_buf(),
            child,
            exit: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status once the child has exited (reaping it), else `None`.
    pub fn poll_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            // An error here means the child was already reaped, which only
            // this struct does; treat it as still unknown.
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some(status);
            }
        }
        self.exit
    }

    /// Sends SIGTERM (a graceful stop for the node) unless it has exited.
    pub fn terminate(&mut self) -> Result<(), ProcessError> {
        if self.poll_exit().is_some() {
            return Ok(());
        }
        rustix::process::kill_process(Pid::from_child(&self.child), Signal::TERM).map_err(|error| {
            ProcessError::Signal {
                name: self.name.clone(),
                pid: self.pid(),
                source: error.into(),
            }
        })
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if self.poll_exit().is_none() {
            // Fails only if it exited meanwhile, which `wait` then reaps.
            let _ = self.child.kill();
            if let Ok(status) = self.child.wait() {
                self.exit = Some(status);
            }
        }
    }

    /// The last `lines` lines of its log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path, lines)
    }
}

/// The last `lines` lines of a (possibly large) log file; reads at most the
/// last 64 KiB.
pub fn log_tail(path: &Path, lines: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let length = file.metadata().map(|metadata| metadata.len()).unwrap_or(0);
    let start = length.saturating_sub(64 * 1024);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Stops every child: SIGTERM to all at once, then waits up to `grace` for
/// them to exit, then SIGKILLs the rest. Returns one outcome per child, in
/// order. Never leaves a child unreaped.
pub fn stop_all(children: &mut [Supervised], grace: Duration) -> Vec<StopOutcome> {
    let mut outcomes: Vec<Option<StopOutcome>> = children
        .iter_mut()
        .map(|child| child.poll_exit().map(StopOutcome::AlreadyExited))
        .collect();
    for (child, outcome) in children.iter_mut().zip(&outcomes) {
        if outcome.is_none() {
            if let Err(error) = child.terminate() {
                tracing::warn!(node = %child.name, %error, "cannot send SIGTERM; it will be killed");
            }
        }
    }
    let deadline = Instant::now() + grace;
    loop {
        for (child, outcome) in children.iter_mut().zip(outcomes.iter_mut()) {
            if outcome.is_none() {
                if let Some(status) = child.poll_exit() {
                    *outcome = Some(StopOutcome::Terminated(status));
                }
            }
        }
        if outcomes.iter().all(Option::is_some) || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    children
        .iter_mut()
        .zip(outcomes)
        .map(|(child, outcome)| {
            outcome.unwrap_or_else(|| {
                child.kill();
                StopOutcome::Killed
            })
        })
        .collect()
}

/// Called first thing in `testnet node`: when started by `testnet up` (the
/// [`PARENT_PID_ENV`] variable is set), asks the kernel to send this process
/// SIGTERM when the launcher dies, which the node handles as a graceful
/// stop. Without the variable it does nothing: a node started by hand lives
/// on its own.
///
/// The kernel ties the signal to the *thread* that forked us, so the
/// launcher spawns its children from its main thread, which lives as long
/// as the launcher.
pub fn die_with_parent() -> Result<(), ProcessError> {
    let Some(value) = std::env::var_os(PARENT_PID_ENV) else {
        return Ok(());
    };
    let text = value.to_string_lossy().into_owned();
    let expected: u32 = text
        .parse()
        .map_err(|_| ProcessError::BadParentPid(text.clone()))?;
    rustix::process::set_parent_process_death_signal(Some(Signal::TERM))
        .map_err(|error| ProcessError::DeathSignal(error.into()))?;
    // If the launcher died between fork and the call above, no signal will
    // ever come: we were re-parented already, so give up now.
    let parent = rustix::process::getppid().map(|pid| pid.as_raw_nonzero().get() as u32);
    if parent != Some(expected) {
        return Err(ProcessError::ParentGone(expected));
    }
    Ok(())
}

/// True while `pid` exists and is not a zombie (reads `/proc`, Linux only).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => match stat.rfind(')') {
            Some(end) => !stat[end + 1..].trim_start().starts_with(['Z', 'X']),
            None => true,
        },
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleep_args(seconds: &str) -> Vec<OsString> {
        vec![OsString::from(seconds)]
    }

    #[test]
    fn stops_children_with_sigterm_and_reaps_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut children: Vec<Supervised> = (1..=3)
            .map(|index| {
                Supervised::spawn(
                    &format!("sleeper{index}"),
                    Path::new("sleep"),
                    &sleep_args("30"),
                    &[],
                    &dir.path().join(format!("{index}.log")),
                )
                .unwrap()
            })
            .collect();
        let pids: Vec<u32> = children.iter().map(Supervised::pid).collect();
        assert!(pids.iter().all(|&pid| process_alive(pid)));
        let outcomes = stop_all(&mut children, Duration::from_secs(10));
        for outcome in outcomes {
            // `sleep` dies of SIGTERM (no handler), which is not a "success".
            assert!(matches!(outcome, StopOutcome::Terminated(_)), "{outcome:?}");
        }
        assert!(pids.iter().all(|&pid| !process_alive(pid)));
        let log = std::fs::read_to_string(dir.path().join("1.log")).unwrap();
        assert!(log.starts_with("=== sleeper1 starting: sleep 30"), "{log}");
    }

    #[test]
    fn children_that_ignore_sigterm_are_killed_after_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let args: Vec<OsString> = [
            "-c",
            "trap '' TERM; echo trap-$((40 + 2)); while :; do sleep 0.05; done",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let log_path = dir.path().join("stubborn.log");
        let mut children =
            vec![Supervised::spawn("stubborn", Path::new("sh"), &args, &[], &log_path).unwrap()];
        // Wait (with a deadline) until the trap is installed; the marker is
        // computed so the header line with the command cannot match it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !log_tail(&log_path, 5).contains("trap-42") {
            assert!(Instant::now() < deadline, "child never got ready");
            std::thread::sleep(Duration::from_millis(10));
        }
        let started = Instant::now();
        let outcomes = stop_all(&mut children, Duration::from_millis(300));
        assert_eq!(outcomes, vec![StopOutcome::Killed]);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!process_alive(children[0].pid()));
    }

    #[test]
    fn exited_children_are_reported_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Supervised::spawn(
            "quick",
            Path::new("true"),
            &[],
            &[],
            &dir.path().join("q.log"),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.poll_exit().is_none() {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        }
        let outcomes = stop_all(std::slice::from_mut(&mut child), Duration::from_secs(1));
        assert!(matches!(outcomes[0], StopOutcome::AlreadyExited(status) if status.success()));
    }

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "a\nb\nc\nd\n").unwrap();
        assert_eq!(log_tail(&path, 2), "c\nd");
        assert_eq!(log_tail(&dir.path().join("missing"), 2), "");
    }

    #[test]
    fn die_with_parent_is_a_no_op_without_the_variable() {
        // The test runner never sets PARENT_PID_ENV for itself.
        if std::env::var_os(PARENT_PID_ENV).is_none() {
            die_with_parent().unwrap();
        }
    }
}
