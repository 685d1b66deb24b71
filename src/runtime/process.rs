//! This process as a node reports it: its resident memory and how long it
//! has run (from /proc; `None` where there is none).

/// This process's resident memory, in bytes.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// Seconds since this process started (its start read from /proc once).
pub fn uptime() -> Option<f64> {
    static STARTED: std::sync::OnceLock<Option<std::time::Instant>> = std::sync::OnceLock::new();
    let started = STARTED.get_or_init(|| std::time::Instant::now().checked_sub(std::time::Duration::from_secs_f64(uptime_from_proc()?)));
    started.map(|s| s.elapsed().as_secs_f64())
}

fn uptime_from_proc() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The name (field 2) may hold spaces: fields are counted after its ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let started_ticks: f64 = after.split_whitespace().nth(19)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let boot: f64 = std::fs::read_to_string("/proc/uptime").ok()?.split_whitespace().next()?.parse().ok()?;
    (ticks > 0.0).then(|| (boot - started_ticks / ticks).max(0.0))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_running_process_has_memory_and_has_run_a_little() {
        assert!(super::resident_bytes().unwrap() > 1024 * 1024);
        let up = super::uptime().unwrap();
        assert!((0.0..3600.0).contains(&up), "{up}");
    }
}
