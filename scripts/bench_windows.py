"""Keyed tumbling-window count over events out of order, skitter against
bytewax 0.21 (`TumblingWindower` + `EventClock` + `count_window`, each of
its ways to use two cores), on the same file; and skitter's `count()` over
`[key, floor(ts / 10)]` by hand (no watermarks), which windows should not
cost more than. Checks that every run writes the same windows.
Used by `scripts/bench --only windows`."""
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

KEYS = 50
SIZE = 10  # seconds per window

BYTEWAX_FLOW = """
import os
from datetime import datetime, timedelta, timezone
import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.connectors.files import FileSource, FileSink
from bytewax.operators.windowing import EventClock, TumblingWindower, count_window

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
flow = Dataflow("window_count")
lines = op.input("in", flow, FileSource(os.environ["BW_IN"]))


def parse(line):
    ts, key = line.split(",")
    return (key, datetime.fromtimestamp(float(ts), tz=timezone.utc))


events = op.map("parse", lines, parse)
# The system clock stands still, so that the watermark is the largest time
# seen less 2 s, as skitter's is (and the outputs can be compared).
clock = EventClock(lambda e: e[1], wait_for_system_duration=timedelta(seconds=2), now_getter=lambda: EPOCH)
windows = count_window("count", events, clock, TumblingWindower(length=timedelta(seconds=10), align_to=EPOCH), lambda e: e[0])
op.output("out", op.map("line", windows.down, lambda kv: ("out", f"{kv[0]} {kv[1][0] * 10} {kv[1][1]}")), FileSink(os.environ["BW_OUT"]))
"""

SKITTER_WINDOWS = (
    'workflow().read_lines("{inp}").map(|l| {{ let p = l.split(","); #{{ ts: parse_float(p[0]), key: p[1] }} }})'
    '.event_time(|e| e.ts, #{{ out_of_order: 2.0 }}).window_count(tumbling(10), |e| e.key)'
    '.map(|w| `${{w.key}} ${{w.start}} ${{w.value}}`).write_lines("{out}")'
)
SKITTER_BY_HAND = (
    'workflow().read_lines("{inp}").map(|l| {{ let p = l.split(","); `${{p[1]}} ${{(parse_float(p[0]) / 10.0).floor().to_int() * 10}}` }})'
    '.count().map(|p| `${{p[0]}} ${{p[1]}}`).write_lines("{out}")'
)

BYTEWAX_CONFIGS = [
    ("1 process, 1 worker", ["-m", "bytewax.run"]),
    ("1 process, 2 workers", ["-m", "bytewax.run", "-w", "2"]),
    ("2 processes", ["-m", "bytewax.testing", "-p", "2"]),
]


def events_file(data, n):
    """`n` events, 100 per second of event time over `KEYS` keys, in the
    order they arrive: each delayed by up to 1.9 s."""
    path = os.path.join(data, f"events-{n}.txt")
    if os.path.exists(path):
        return path
    rng = random.Random(29)
    rows = []
    for i in range(n):
        t = 1_700_000_000 + i / 100
        rows.append((t + rng.random() * 1.9, t, f"k{rng.randrange(KEYS)}"))
    rows.sort()
    os.makedirs(data, exist_ok=True)
    with open(path, "w") as f:
        f.writelines(f"{t:.3f},{k}\n" for _, t, k in rows)
    return path


def sorted_lines(path):
    with open(path) as f:
        return sorted(f.read().splitlines())


def figures(bin_path, data, lib, n, runs):
    inp = events_file(data, n)
    work = tempfile.mkdtemp()
    out = os.path.join(work, "out.txt")

    def skitter(flow):
        secs = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run([bin_path, "local", "start", "--no-log", "--deploy", flow.format(inp=inp, out=out)], cwd=work,
                           env=dict(os.environ, SKITTER_CHECKPOINT_DIR=os.path.join(work, "ck"), SKITTER_CHECKPOINT_INTERVAL="0"),
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            secs.append(time.perf_counter() - start)
        return statistics.median(secs), min(secs), sorted_lines(out)

    windows = skitter(SKITTER_WINDOWS)
    by_hand = skitter(SKITTER_BY_HAND)
    want = windows[2]
    if by_hand[2] != want:
        sys.exit("bench: skitter's windows and its count by hand disagree")
    rows = [("skitter window_count(tumbling(10)) with event_time (local, 2 slots)", windows[0], windows[1]),
            ("skitter count() over [key, floor(ts / 10)], no watermarks", by_hand[0], by_hand[1])]
    if lib is not None:
        module = os.path.join(work, "bw_windows.py")
        with open(module, "w") as f:
            f.write(BYTEWAX_FLOW)
        for name, args in BYTEWAX_CONFIGS:
            secs = []
            for _ in range(runs):
                bw_out = os.path.join(work, "bw-out.txt")
                if os.path.exists(bw_out):
                    os.remove(bw_out)
                env = dict(os.environ, PYTHONPATH=lib, BW_IN=inp, BW_OUT=bw_out)
                start = time.perf_counter()
                subprocess.run([sys.executable] + args + ["bw_windows:flow"], cwd=work, env=env, check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                secs.append(time.perf_counter() - start)
                if sorted_lines(bw_out) != want:
                    sys.exit(f"bench: bytewax ({name}) and skitter disagree on the windows")
            rows.append((f"bytewax 0.21 count_window, {name}", statistics.median(secs), min(secs)))
    print(f"\n| {n:,} events, {KEYS} keys, 10 s windows, out of order by < 2 s | median | best | events/s |")
    print("| --- | ---: | ---: | ---: |")
    for name, med, best in rows:
        print(f"| {name} | {med:.2f} s | {best:.2f} s | {n / med:,.0f} |")
    bw = [med for name, med, _ in rows if name.startswith("bytewax")]
    if bw:
        print(f"\nskitter windows against bytewax's best configuration: {min(bw) / windows[0]:.1f}x")


def latency(bin_path, sender, rate=10_000, seconds=3.0):
    """Events at `rate` per second (each line its send time, the event
    time) through tcp_source -> event_time -> window_count(tumbling(0.01))
    -> inspect, in local mode: how long after a window's end its result is
    printed. The watermark passes the end with the first event at or after
    it (1 in 10,000 s later at this rate), so this is the time from the
    watermark passing the end to the result, plus at most that gap.
    Returns (p50, p99, max) in seconds, and how many windows."""
    total = int(rate * seconds)
    snd = subprocess.Popen([sys.executable, "-c", sender, str(rate), str(total)], stdout=subprocess.PIPE, text=True)
    port = int(snd.stdout.readline())
    expr = (f'workflow().tcp_source("127.0.0.1", {port}).map(|l| parse_int(l) / 1000000000.0).event_time(|t| t)'
            '.window_count(tumbling(0.01), |t| "all").map(|w| w.end).inspect("t")')
    proc = subprocess.Popen([bin_path, "local", "start", "--no-log", "--deploy", expr], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, bufsize=1, env=dict(os.environ, SKITTER_CHECKPOINT_INTERVAL="0"))
    lat = []
    for line in proc.stdout:
        now = time.perf_counter_ns() / 1e9
        if line.startswith("t: "):
            lat.append(now - float(line[3:].strip()))
    snd.wait()
    proc.wait()
    # The last windows close at the end of the input, not on a watermark.
    lat = sorted(lat[:-2])
    return lat[len(lat) // 2], lat[int(len(lat) * 0.99)], lat[-1], len(lat)


def memory(bin_path, minutes):
    """An endless keyed window count (1,000 keys, 1 s windows of one event
    each, event time running about 1,000 times faster than the clock; the
    results are dropped, not kept) for `minutes`: the node's resident
    memory 5 s in and then every tenth of the run, in MB."""
    expr = ('workflow().stream_source(|n| #{ ts: n / 1000.0, k: n % 1000 }).event_time(|e| e.ts)'
            '.window_count(tumbling(1), |e| e.k).filter(|w| w.value > 1).collect()')
    proc = subprocess.Popen([bin_path, "local", "start", "--no-log", "--deploy", expr], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=dict(os.environ, SKITTER_CHECKPOINT_INTERVAL="0"))

    def rss():
        with open(f"/proc/{proc.pid}/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) / 1024

    time.sleep(5)
    samples = [rss()]
    for _ in range(10):
        time.sleep(minutes * 6)
        samples.append(rss())
    proc.terminate()
    proc.wait()
    return samples
