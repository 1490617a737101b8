//! Progress of long CPU launches: a grid of millions of blocks can run for hours on the VM or
//! the simulator, so after a few seconds a line on standard error says how far it got (and
//! that Ctrl-C stops it), then again every few seconds. Short launches print nothing.
//! `TL_PROGRESS=0` turns it off; `TL_PROGRESS=S` reports every `S` seconds instead of 5.

use std::time::{Duration, Instant};

/// How long a launch runs before its first progress line, and between lines.
const INTERVAL: Duration = Duration::from_secs(5);

pub struct Progress {
    what: String,
    total: u64,
    start: Instant,
    next: Duration,
    interval: Duration,
    enabled: bool,
}

impl Progress {
    /// Progress of `what` (e.g. "vm `softmax`") over `grid`'s blocks.
    pub fn new(what: String, grid: [u32; 3]) -> Progress {
        let (enabled, interval) = match interval_setting(INTERVAL) {
            Some(interval) => (true, interval),
            None => (false, INTERVAL),
        };
        let total = grid.iter().map(|&g| g as u64).product();
        Progress { what, total, start: Instant::now(), next: interval, interval, enabled }
    }

    /// Called after each block; `done` blocks have finished.
    pub fn block_done(&mut self, done: u64) {
        if !self.enabled || self.total < 2 {
            return;
        }
        let elapsed = self.start.elapsed();
        if elapsed < self.next {
            return;
        }
        self.next = elapsed + self.interval;
        let percent = done as f64 * 100.0 / self.total as f64;
        let rate = done as f64 / elapsed.as_secs_f64();
        let left = if rate > 0.0 { format!(", about {:.0} s left", (self.total - done) as f64 / rate) } else { String::new() };
        eprintln_quietly(&format!(
            "tl: {}: {done} of {} blocks ({percent:.1}%) after {:.0} s{left}; Ctrl-C stops it",
            self.what,
            self.total,
            elapsed.as_secs_f64()
        ));
    }
}

/// The interval between progress lines that `TL_PROGRESS` sets (seconds, at most an hour),
/// `default` when it is unset or not a number, `None` when it turns progress off (0 or less).
pub fn interval_setting(default: Duration) -> Option<Duration> {
    match std::env::var("TL_PROGRESS").ok().and_then(|v| v.trim().parse::<f64>().ok()) {
        Some(s) if s <= 0.0 || !s.is_finite() => None,
        Some(s) => Some(Duration::from_secs_f64(s.min(3600.0))),
        None => Some(default),
    }
}

/// A line on standard error; a closed or full stderr is not worth a panic.
fn eprintln_quietly(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
