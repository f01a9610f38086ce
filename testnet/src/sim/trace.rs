//! The event log of `testnet sim --trace FILE`: one JSON object per line,
//! in the order the simulation did things, stamped with simulated time
//! only (`t_ns`), so the same seed and options write the same file byte
//! for byte. It records every frame sent (with its kind, size, arrival or
//! why it was dropped), connections, blocks mined and where each node
//! first held them, tip moves and reorgs, txs submitted, and the faults.
//! Large by nature (every `inv` on every link): meant for small networks
//! and short runs, or for replaying a failing seed.

use super::scheduler::SimTime;
use std::fmt::Display;
use std::io::Write;

/// A sink for trace lines; `Trace::off()` writes nothing and costs a
/// branch per call.
pub struct Trace {
    out: Option<Box<dyn Write>>,
    /// The first write error; later lines are skipped and the run's end
    /// reports it.
    error: Option<std::io::Error>,
    lines: u64,
}

impl Trace {
    pub fn off() -> Trace {
        Trace {
            out: None,
            error: None,
            lines: 0,
        }
    }

    /// Traces into `out` (buffer it: a run writes millions of lines).
    pub fn to(out: Box<dyn Write>) -> Trace {
        Trace {
            out: Some(out),
            error: None,
            lines: 0,
        }
    }

    pub fn enabled(&self) -> bool {
        self.out.is_some()
    }

    /// Writes `{"t_ns":T,"event":"EVENT",FIELDS}`; `fields` is already
    /// JSON (`"key":value` pairs joined by commas), built by the caller
    /// only when `enabled()`.
    pub fn line(&mut self, now: SimTime, event: &str, fields: impl Display) {
        let Some(out) = self.out.as_mut() else {
            return;
        };
        if self.error.is_some() {
            return;
        }
        let result = writeln!(out, "{{\"t_ns\":{now},\"event\":\"{event}\",{fields}}}");
        match result {
            Ok(()) => self.lines += 1,
            Err(error) => self.error = Some(error),
        }
    }

    /// Flushes; the first error any write met, if one did.
    pub fn finish(&mut self) -> Result<u64, String> {
        if let Some(out) = self.out.as_mut() {
            if self.error.is_none() {
                if let Err(error) = out.flush() {
                    self.error = Some(error);
                }
            }
        }
        match self.error.take() {
            Some(error) => Err(format!("writing the trace: {error}")),
            None => Ok(self.lines),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A `Write` whose bytes the test can read afterwards.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_json_objects_and_errors_surface_once() {
        let shared = Shared::default();
        let mut trace = Trace::to(Box::new(shared.clone()));
        trace.line(5, "mined", format_args!("\"node\":{}", 3));
        assert_eq!(trace.finish(), Ok(1));
        let text = String::from_utf8(shared.0.lock().unwrap().clone()).unwrap();
        let value: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(value["t_ns"], 5);
        assert_eq!(value["event"], "mined");
        assert_eq!(value["node"], 3);

        let mut broken = Trace::to(Box::new(Broken));
        broken.line(1, "a", "\"x\":1");
        broken.line(2, "b", "\"x\":2");
        assert!(broken.finish().unwrap_err().contains("disk full"));
        let mut off = Trace::off();
        off.line(1, "a", "\"x\":1");
        assert_eq!(off.finish(), Ok(0));
    }
}
