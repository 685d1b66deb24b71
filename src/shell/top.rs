//! `top()` at an interactive prompt: a table of the running workflows'
//! operators, redrawn every second on the terminal's alternate screen, until
//! `q` or Ctrl-C. The terminal is put back as it was, and the shell goes on.

use std::io::Write;
use std::time::{Duration, Instant};

use super::Backend;
use crate::workflow::watch::{frame, Watched};

/// How often the table is redrawn.
const EVERY: Duration = Duration::from_secs(1);

/// Whether an entry asks for the live table.
pub fn wanted(entry: &str) -> bool {
    let e: String = entry.chars().filter(|c| !c.is_whitespace()).collect();
    e == "top()" || e == "top();"
}

/// The terminal in a mode where keys arrive one by one, unechoed, Ctrl-C
/// included; the settings before are restored when it is dropped.
struct RawKeys {
    before: libc::termios,
}

impl RawKeys {
    fn new() -> Option<RawKeys> {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a termios we own.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return None;
            }
            let before = t;
            t.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG);
            t.c_cc[libc::VMIN] = 1;
            t.c_cc[libc::VTIME] = 0;
            if libc::tcsetattr(0, libc::TCSANOW, &t) != 0 {
                return None;
            }
            Some(RawKeys { before })
        }
    }

    /// A key pressed within `wait`, if any.
    fn key(&self, wait: Duration) -> Option<u8> {
        let mut fds = libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 };
        // SAFETY: one pollfd we own; read into a byte we own.
        unsafe {
            if libc::poll(&mut fds, 1, wait.as_millis().min(i32::MAX as u128) as i32) <= 0 {
                return None;
            }
            let mut byte = 0u8;
            (libc::read(0, (&mut byte as *mut u8).cast(), 1) == 1).then_some(byte)
        }
    }
}

impl Drop for RawKeys {
    fn drop(&mut self) {
        // SAFETY: restores the settings read from the same descriptor.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &self.before);
        }
    }
}

/// Enter the alternate screen and hide the cursor; and leave them.
const ENTER: &str = "\x1b[?1049h\x1b[?25l";
pub const LEAVE: &str = "\x1b[?25h\x1b[?1049l";

/// Whether the table is on the screen (an abrupt exit leaves it first).
pub static DRAWING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Draws the table until `q`, `Q`, Ctrl-C or Ctrl-D; an error asking the
/// node ends it and is returned.
pub fn run(backend: &mut dyn Backend) -> Result<(), String> {
    let keys = RawKeys::new().ok_or("top() needs a terminal")?;
    let mut out = std::io::stdout();
    let _ = write!(out, "{ENTER}");
    DRAWING.store(true, std::sync::atomic::Ordering::Relaxed);
    let title = format!("skitter top - {} - q or Ctrl-C to quit", backend.node());
    let mut before: Vec<Watched> = Vec::new();
    let result = loop {
        let now = match backend.watch() {
            Ok(now) => now,
            Err(e) => break Err(e),
        };
        let text = frame(&title, &before, &now);
        // Output processing is left on: a newline still starts a line.
        let _ = write!(out, "\x1b[H\x1b[2J{text}");
        let _ = out.flush();
        before = now;
        let until = Instant::now() + EVERY;
        let quit = loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break false;
            }
            if let Some(b'q' | b'Q' | 3 | 4) = keys.key(left) {
                break true;
            }
        };
        if quit {
            break Ok(());
        }
    };
    let _ = write!(out, "{LEAVE}");
    let _ = out.flush();
    DRAWING.store(false, std::sync::atomic::Ordering::Relaxed);
    drop(keys);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_bare_call_is_the_live_table() {
        assert!(wanted("top()"));
        assert!(wanted(" top ( ) ; "));
        assert!(!wanted("let t = top()"));
        assert!(!wanted("stop()"));
    }
}
