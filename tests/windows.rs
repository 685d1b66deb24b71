//! Event time and windows, against results computed here from the same
//! events: tumbling, sliding and session windows over input out of order
//! (by less than `out_of_order`, so nothing is late), locally and on a
//! master with two workers; late records on `late` or, within the allowed
//! lateness, re-emitting their window; a stopped and resumed workflow
//! emits every window once.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::node::{run, Node, COOKIE};
use common::Skitter;

/// `n` events `(time in ms, user)`, in the order they arrive: each is
/// delayed by up to 1.9 s, so the order is off by less than 2 s.
fn events(n: usize, seed: u64) -> Vec<(i64, String)> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        state >> 33
    };
    let mut t = 0i64;
    let mut out: Vec<(i64, i64, String)> = (0..n)
        .map(|_| {
            t += (next() % 40) as i64; // ms between events
            let user = format!("u{}", next() % 7);
            let arrives = t + (next() % 1900) as i64;
            (arrives, t, user)
        })
        .collect();
    out.sort();
    out.into_iter().map(|(_, t, u)| (t, u)).collect()
}

fn write_events(path: &Path, events: &[(i64, String)]) {
    let text: String = events.iter().map(|(t, u)| format!("{}.{:03},{u}\n", t / 1000, t % 1000)).collect();
    std::fs::write(path, text).unwrap();
}

/// What the workflow reads: `#{ ts, user }` per line.
fn source(path: &Path) -> String {
    format!("workflow().read_lines({path:?}).map(|l| {{ let p = l.split(\",\"); #{{ ts: parse_float(p[0]), user: p[1] }} }})")
}

/// A window as the test prints it (times in ms, as the windows are whole ms).
fn line(key: &str, start_ms: i64, end_ms: i64, value: i64) -> String {
    format!("{key} {start_ms} {end_ms} {value}")
}

/// What the workflow maps each window to, the same way.
const AS_LINE: &str = ".map(|w| `${w.key} ${(w.start * 1000.0).round().to_int()} ${(w.end * 1000.0).round().to_int()} ${w.value}`)";

/// A session as a line: its last event's time is its end less the gap.
const SESSION_AS_LINE: &str =
    ".map(|w| `${w.key} ${(w.start * 1000.0).round().to_int()} ${((w.end - 0.3005) * 1000.0).round().to_int()} ${w.value}`)";

fn tumbling_expected(events: &[(i64, String)], size_ms: i64) -> Vec<String> {
    let mut counts: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for (t, u) in events {
        *counts.entry((u.clone(), t.div_euclid(size_ms) * size_ms)).or_default() += 1;
    }
    sorted(counts.into_iter().map(|((u, s), n)| line(&u, s, s + size_ms, n)).collect())
}

/// Sliding windows summing the events' milliseconds within their second.
fn sliding_expected(events: &[(i64, String)], size_ms: i64, slide_ms: i64) -> Vec<String> {
    let mut sums: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for (t, u) in events {
        let mut start = t.div_euclid(slide_ms) * slide_ms;
        while start > t - size_ms {
            *sums.entry((u.clone(), start)).or_default() += t % 1000;
            start -= slide_ms;
        }
    }
    sorted(sums.into_iter().map(|((u, s), n)| line(&u, s, s + size_ms, n)).collect())
}

/// Sessions with a gap of 300.5 ms (no two events are that far apart to
/// the ms: no tie), each as its first event, its last, and how many.
fn session_expected(events: &[(i64, String)]) -> Vec<String> {
    let mut by_user: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (t, u) in events {
        by_user.entry(u.clone()).or_default().push(*t);
    }
    let mut out = Vec::new();
    for (u, mut times) in by_user {
        times.sort();
        let (mut start, mut last, mut n) = (times[0], times[0], 0);
        for t in times {
            if t > last + 300 {
                out.push(line(&u, start, last, n));
                (start, n) = (t, 0);
            }
            last = t;
            n += 1;
        }
        out.push(line(&u, start, last, n));
    }
    sorted(out)
}

/// A timer 5 s after each event, once per user and time.
fn timers_expected(events: &[(i64, String)]) -> Vec<String> {
    let mut lines: Vec<String> = events.iter().map(|(t, u)| format!("{u} {}", t + 5000)).collect();
    lines.sort();
    lines.dedup();
    lines
}

fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort();
    lines
}

/// The three kinds of windows as one script, each collected and printed
/// as sorted lines after a `== name` header.
fn script(path: &Path) -> String {
    let src = source(path);
    let run = |name: &str, windows: &str, as_line: &str| {
        format!(
            "{{ let r = deploy({src}.event_time(|e| e.ts, #{{ out_of_order: 2.0 }}){windows}{as_line}.collect()); \
             let s = wait(r); if s != \"finished\" {{ throw `{name}: ${{s}}` }} \
             let lines = results(r); lines.sort(); print(\"== {name}\"); for l in lines {{ print(l) }} }}"
        )
    };
    [
        run("tumbling", ".window_count(tumbling(10), |e| e.user)", AS_LINE),
        run("sliding", ".window(sliding(6, 2), |e| e.user, || 0, |sum, e| sum + (e.ts * 1000.0).round().to_int() % 1000)", AS_LINE),
        run("session", ".window(session(0.3005), |e| e.user, || 0, |n, e| n + 1, #{ merge: |a, b| a + b })", SESSION_AS_LINE),
        run(
            "timers",
            ".apply(operator(\"remind\").strategy(keyed(|e| e.user)).init(|| \"\")\
               .on(\"in\", |e| { this = e.user; timer(e.ts + 5); }).on_timer(|t| emit(\"out\", [this, t])))",
            ".map(|p| `${p[0]} ${(p[1] * 1000.0).round().to_int()}`)",
        ),
    ]
    .join("\n")
}

fn sections(out: &str) -> BTreeMap<String, Vec<String>> {
    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = String::new();
    for l in out.lines() {
        match l.strip_prefix("== ") {
            Some(name) => current = name.to_string(),
            None => got.entry(current.clone()).or_default().push(l.to_string()),
        }
    }
    for lines in got.values_mut() {
        lines.sort();
    }
    got
}

fn check(out: &str, events: &[(i64, String)]) {
    let got = sections(out);
    let want = [
        ("tumbling", tumbling_expected(events, 10_000)),
        ("sliding", sliding_expected(events, 6_000, 2_000)),
        ("session", session_expected(events)),
        ("timers", timers_expected(events)),
    ];
    for (name, want) in want {
        let got = got.get(name).cloned().unwrap_or_default();
        assert!(want.len() > 10, "{name}: the test's input makes too few windows to prove anything");
        assert_eq!(got.len(), want.len(), "{name}: {} windows, expected {}", got.len(), want.len());
        assert!(got == want, "{name}: the windows differ from the ones computed here: first {:?} vs {:?}", got.first(), want.first());
    }
}

#[test]
fn tumbling_sliding_and_session_windows_are_exact_over_out_of_order_input_locally() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.txt");
    let events = events(20_000, 7);
    write_events(&path, &events);
    let out = Skitter::new().args(["eval", &script(&path)]).run();
    out.success();
    check(&out.stdout(), &events);
}

#[test]
fn tumbling_sliding_and_session_windows_are_exact_on_a_master_and_two_workers() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path();
    let path = tmp.join("events.txt");
    let events = events(20_000, 11);
    write_events(&path, &events);
    let w1 = Node::worker("w1", "127.0.0.150", &[], tmp);
    let w2 = Node::worker("w2", "127.0.0.151", &[], tmp);
    let master =
        Node::spawn(&["master", "start", "--no-log", "-n", "mw", "--listen", "127.0.0.152:0", &w1.addr, &w2.addr], tmp, COOKIE, None);
    assert!(master.wait_stderr("connected to 2 worker(s)", Duration::from_secs(10)), "{}", master.stderr());
    let out = run(tmp, &["rpc", "mw", &format!("{{ {} }}", script(&path))]);
    out.success();
    check(&out.stdout(), &events);
}

/// Records in order, then one from the first window, long closed: it is
/// late (the generator runs as two instances, taking turns; the late
/// record's instance has sent watermarks past the first window in its
/// earlier batches, and the pause before it lets the other one end). Without lateness it leaves on `late`; with enough it updates its
/// window, which is emitted again. `stats` counts it, and shows the
/// window's event time.
#[test]
fn a_late_record_goes_to_late_or_within_the_allowed_lateness_emits_its_window_again() {
    let events = "stream_source(|n| if n < 5000 { #{ ts: n / 100.0, k: \"a\" } } \
        else if n == 5000 { #{ ts: 49.995, k: \"a\" } } else if n == 5001 { sleep(0.3); #{ ts: 0.5, k: \"a\" } } else { () })";
    let script = format!(
        "let wf = workflow().node(\"src\", {events}).node(\"time\", event_time(|e| e.ts)).link(\"src\", \"time\"); \
         let r = deploy(wf.node(\"w\", window_count(tumbling(10), |e| e.k)).link(\"time\", \"w\") \
            .node(\"ok\", collect()).link(\"w.out\", \"ok\").node(\"late\", collect()).link(\"w.late\", \"late\")); \
         print(wait(r)); print(results(r, \"late\")); print(results(r, \"ok\").filter(|w| w.start == 0)); \
         let w = stats(r).operators.w; print(`late ${{w.late}}, event time past the first window: ${{w.watermark > 10.0}}, lag ${{w.lag > 0}}`); \
         let r = deploy(workflow().{events}.event_time(|e| e.ts).window_count(tumbling(10), |e| e.k, #{{ allowed_lateness: 1000 }}).collect()); \
         print(wait(r)); print(results(r).filter(|w| w.start == 0).map(|w| w.value));"
    );
    let out = Skitter::new().args(["eval", &script]).run();
    out.success();
    let lines: Vec<String> = out.stdout().lines().map(str::to_string).collect();
    assert_eq!(
        lines,
        [
            "finished",
            "[#{\"k\": \"a\", \"ts\": 0.5}]",
            "[#{\"end\": 10, \"key\": \"a\", \"start\": 0, \"value\": 1000}]",
            "late 1, event time past the first window: true, lag true",
            "finished",
            "[1000, 1001]",
        ],
        "{}",
        out.stderr()
    );
}

/// An endless stream of 100 events a second (of event time) per key, in
/// windows of one second, stopped and deployed again twice: the windows
/// open at each stop stay in its checkpoint and close in the next run, so
/// every window is written once, with all of its 100 events.
#[test]
fn a_stopped_and_resumed_workflow_emits_every_window_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.txt");
    let deploy = format!(
        "deploy(workflow().stream_source(|n| #{{ ts: n / 100.0, k: n % 2 }}).event_time(|e| e.ts)\
         .window_count(tumbling(1), |e| e.k).map(|w| `${{w.key}} ${{w.start}} ${{w.value}}`).write_lines({out:?}), \
         #{{ name: \"windows\", checkpoint_interval: 0.05 }})"
    );
    let script = format!(
        "for round in 0..3 {{ let r = {deploy}; let t = timestamp(); \
         while stats(r).checkpoints.completed < 3 && t.elapsed < 30.0 {{ sleep(0.01) }} stop(r); print(wait(r)); }}"
    );
    let run = Skitter::new().args(["eval", &script]).run();
    run.success();
    assert_eq!(run.stdout().lines().collect::<Vec<_>>(), ["stopped", "stopped", "stopped"], "{}", run.stderr());
    let text = std::fs::read_to_string(&out).unwrap();
    let mut seen = BTreeMap::new();
    for l in text.lines() {
        let mut parts = l.split(' ');
        let (k, start, value) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        assert!(seen.insert((k.to_string(), start.to_string()), value.to_string()).is_none(), "window {k} {start} written twice:\n{text}");
    }
    assert!(seen.len() > 6, "too few windows closed to prove anything:\n{text}");
    // Keys 0 and 1 take turns: a second holds 50 of each.
    for ((k, start), value) in &seen {
        assert_eq!(value, "50", "window {k} {start} holds {value} events, not 50:\n{text}");
    }
}

/// A keyed operator sets a timer 5 s after each of its key's events (twice
/// each: one timer); `on_timer` runs once per key and time, in time order,
/// with the key's state, once event time has passed it (or at the end).
#[test]
fn timers_fire_once_per_key_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.txt");
    let events = events(3000, 5);
    write_events(&path, &events);
    let script = format!(
        "let op = operator(\"remind\").strategy(keyed(|e| e.user)).init(|| \"\") \
             .on(\"in\", |e| {{ this = e.user; timer(e.ts + 5); timer(e.ts + 5); }}) \
             .on_timer(|t| emit(\"out\", `${{this}} ${{(t * 1000.0).round().to_int()}}`)); \
         let r = deploy({}.event_time(|e| e.ts, #{{ out_of_order: 2.0 }}).apply(op).collect()); \
         print(wait(r)); for l in results(r) {{ print(l) }}",
        source(&path)
    );
    let out = Skitter::new().args(["eval", &script]).run();
    out.success();
    let stdout = out.stdout();
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("finished"), "{stdout}");
    let mut got: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for l in lines {
        let (user, t) = l.split_once(' ').unwrap();
        got.entry(user.to_string()).or_default().push(t.parse().unwrap());
    }
    let mut want: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (t, u) in &events {
        want.entry(u.clone()).or_default().push(t + 5000);
    }
    for times in want.values_mut() {
        times.sort();
        times.dedup();
    }
    assert_eq!(got.len(), want.len(), "{stdout}");
    for (user, times) in &want {
        assert_eq!(got.get(user), Some(times), "{user}'s timers fired otherwise: once each, in time order");
    }
}

/// Timers set before a stop fire after the workflow is deployed again:
/// they are in its checkpoint. Stopped twice, then run to the end of its
/// input, a workflow fires every timer once.
#[test]
fn timers_are_kept_by_a_stop_and_fire_after_the_next_deploy() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.txt");
    let deploy = format!(
        "deploy(workflow().stream_source(|n| if n < 2000000 {{ #{{ ts: n / 100.0 }} }} else {{ () }}).event_time(|e| e.ts)\
         .apply(operator(\"ticks\").init(|| 0).on(\"in\", |e| {{ if e.ts == e.ts.floor() {{ timer(e.ts + 0.5) }} }}).on_timer(|t| emit(\"out\", t)))\
         .write_lines({out:?}), #{{ name: \"ticks\", checkpoint_interval: 0.05 }})"
    );
    let script = format!(
        "for round in 0..2 {{ let r = {deploy}; let t = timestamp(); \
         while stats(r).checkpoints.completed < 3 && t.elapsed < 30.0 {{ sleep(0.01) }} stop(r); print(wait(r)); print(`# ${{stats(r)}}`); }} \
         let r = {deploy}; print(wait(r)); print(`# ${{stats(r)}}`);"
    );
    let run = Skitter::new().args(["eval", &script]).run();
    run.success();
    assert_eq!(
        run.stdout().lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>(),
        ["stopped", "stopped", "finished"],
        "{}",
        run.stderr()
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let mut fired: Vec<f64> = text.lines().map(|l| l.parse().unwrap()).collect();
    // Two instances write in turns: in time order, every second's timer
    // (at s + 0.5) fired once, none skipped: 0.5, 1.5, ..., 19999.5.
    fired.sort_by(f64::total_cmp);
    let want: Vec<f64> = (0..20_000).map(|s| s as f64 + 0.5).collect();
    assert!(
        fired == want,
        "{} timers fired, {} expected; first difference at {:?}:\n{}{}",
        fired.len(),
        want.len(),
        fired.iter().zip(&want).position(|(a, b)| a != b),
        run.stdout(),
        run.stderr()
    );
}

/// Two inputs to one window: a connection that sends times 0 to 29 and
/// then nothing (the connection stays open), and a stream that goes on.
/// The window's event time is the earlier of the two: held at 29 by the
/// silent input — unless its `event_time` has `idle`, after which the
/// stream alone moves it on.
#[test]
fn an_idle_input_does_not_hold_windows_back() {
    let held = |idle: &str| -> f64 {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let feeder = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            for t in 0..30 {
                writeln!(conn, "{t}").unwrap();
            }
            conn.flush().unwrap();
            // Silent, and open until the workflow is aborted.
            let mut rest = String::new();
            let _ = std::io::Read::read_to_string(&mut conn, &mut rest);
        });
        let script = format!(
            "let ts = |x| x; \
             let wf = workflow().node(\"a\", tcp_source(\"127.0.0.1\", {port})).node(\"p\", map(|l| parse_float(l))).link(\"a\", \"p\") \
                 .node(\"ta\", event_time(ts, #{{ {idle} }})).link(\"p\", \"ta\") \
                 .node(\"b\", stream_source(|n| {{ sleep(0.01); n / 10.0 }})).node(\"tb\", event_time(ts, #{{ {idle} }})).link(\"b\", \"tb\") \
                 .node(\"w\", window_count(tumbling(1), |x| \"all\")).link(\"ta\", \"w\").link(\"tb\", \"w\").node(\"out\", collect()).link(\"w\", \"out\"); \
             let r = deploy(wf); let t = timestamp(); \
             let ahead = || {{ let tb = stats(r).operators.tb; \"watermark\" in tb && tb.watermark >= 40.0 }}; \
             while !ahead.call() && t.elapsed < 30.0 {{ sleep(0.05) }} \
             let w = stats(r).operators.w; print(if \"watermark\" in w {{ w.watermark }} else {{ -1.0 }}); abort(r);"
        );
        let out = Skitter::new().args(["eval", &script]).run();
        out.success();
        feeder.join().unwrap();
        out.stdout().lines().next().and_then(|l| l.parse().ok()).unwrap_or_else(|| panic!("{}{}", out.stdout(), out.stderr()))
    };
    let without = held("");
    assert!(without <= 29.0, "the silent input holds the window at 29, not {without}");
    let with = held("idle: 0.3");
    assert!(with >= 35.0, "idle for 0.3 s, the silent input holds nothing back: the window is at {with}");
}

/// On processing time, a window closes on the clock and a `timer_after`
/// fires, while the input (a connection that sent 10 lines) is still open.
#[test]
fn windows_on_processing_time_and_clock_timers_fire_while_the_input_is_open() {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let feeder = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        for i in 0..10 {
            writeln!(conn, "{i}").unwrap();
        }
        conn.flush().unwrap();
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut conn, &mut rest);
    });
    let script = format!(
        "let batch = operator(\"batch\").init(|| 0).on(\"in\", |l| {{ this += 1; if this == 1 {{ timer_after(0.2) }} }}) \
             .on_timer(|t| {{ emit(\"out\", this); this = 0; }}); \
         let wf = workflow().node(\"a\", tcp_source(\"127.0.0.1\", {port})) \
             .node(\"w\", window_count(tumbling(0.3), |l| \"all\")).link(\"a\", \"w\").node(\"windows\", collect()).link(\"w\", \"windows\") \
             .node(\"b\", batch).link(\"a\", \"b\").node(\"batches\", collect()).link(\"b\", \"batches\"); \
         let r = deploy(wf); let t = timestamp(); \
         let out = || {{ let o = stats(r).operators; [o.w.out, o.b.out] }}; \
         while (out.call()[0] == 0 || out.call()[1] == 0) && t.elapsed < 20.0 {{ sleep(0.02) }} \
         print(`${{status(r)}} ${{out.call().map(|n| n >= 1)}}`); abort(r);"
    );
    let out = Skitter::new().args(["eval", &script]).run();
    out.success();
    feeder.join().unwrap();
    // A window and a batch came out while the input is open (lines that
    // arrive in two reads on a loaded machine make two batches: also right).
    assert_eq!(out.stdout().lines().next(), Some("running [true, true]"), "{}{}", out.stdout(), out.stderr());
}

/// Killed (SIGKILL) at random moments after a checkpoint and run again,
/// a window count over out-of-order events writes every window once,
/// with exactly its events: windows and watermarks come back from the
/// checkpoint, and the file from its length then.
#[test]
fn a_window_count_killed_at_random_moments_and_run_again_writes_every_window_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.txt");
    let events = events(300_000, 13);
    write_events(&path, &events);
    let out = dir.path().join("out.txt");
    let deploy = format!(
        "{}.event_time(|e| e.ts, #{{ out_of_order: 2.0 }}).window_count(tumbling(10), |e| e.user){AS_LINE}.write_lines({out:?})",
        source(&path)
    );
    let ck = dir.path().join("ck");
    let local = || {
        let mut cmd = std::process::Command::new(common::BIN);
        cmd.args(["local", "start", "--no-log", "--slots", "2", "--deploy", &deploy])
            .current_dir(dir.path())
            // Its node's records stay in the test's directory.
            .env("XDG_STATE_HOME", dir.path())
            .env("SKITTER_CHECKPOINT_DIR", &ck)
            .env("SKITTER_CHECKPOINT_INTERVAL", "0.05")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        cmd
    };
    let mut seed = std::process::id() as u64;
    let mut kills = 0;
    for _ in 0..3 {
        let mut child = local().spawn().unwrap();
        let before = common::newest_checkpoint(&ck);
        let progressed =
            common::wait_until(Duration::from_secs(60), || common::newest_checkpoint(&ck) > before || child.try_wait().unwrap().is_some());
        assert!(progressed, "no checkpoint completed within 60 s");
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        std::thread::sleep(Duration::from_millis((seed >> 33) % 60));
        if child.try_wait().unwrap().is_none() {
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(kills >= 1, "the run ended before any kill: the test proves nothing");
    let done = local().output().unwrap();
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let got = sorted(std::fs::read_to_string(&out).unwrap().lines().map(String::from).collect());
    let want = tumbling_expected(&events, 10_000);
    assert_eq!(got.len(), want.len(), "after {kills} kills: {} windows written, {} expected", got.len(), want.len());
    assert!(got == want, "after {kills} kills the windows differ from the ones computed here");
}
