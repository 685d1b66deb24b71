"""scripts/bench --only kafka: Kafka -> count -> Kafka, skitter beside bytewax's Kafka
connector on the same broker (scripts/kafka-broker) and the same topic, and the latency of
Kafka -> map -> Kafka at a fixed rate. bytewax 0.21 with its kafka extra is installed with
pip into target/bench/pylib-kafka."""

import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BROKER = os.path.join(ROOT, "scripts", "kafka-broker")

BYTEWAX_COUNT = """
import os
import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.connectors.kafka import KafkaSource, KafkaSink, KafkaSinkMessage

brokers = [os.environ["BW_BROKER"]]
flow = Dataflow("kafka_count")
msgs = op.input("in", flow, KafkaSource(brokers, ["in"], tail=False, add_config={"group.id": "bytewax"}))
words = op.flat_map("split", msgs, lambda m: m.value.decode().split(" "))
counts = op.count_final("count", words, lambda w: w)
out = op.map("msg", counts, lambda kv: KafkaSinkMessage(kv[0].encode(), str(kv[1]).encode()))
op.output("out", out, KafkaSink(brokers, os.environ["BW_OUT"]))
"""

BYTEWAX_PASS = """
import os
import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.connectors.kafka import KafkaSource, KafkaSink, KafkaSinkMessage

brokers = [os.environ["BW_BROKER"]]
flow = Dataflow("kafka_pass")
msgs = op.input("in", flow, KafkaSource(brokers, ["lat_in"], add_config={"group.id": "bytewax", "fetch.wait.max.ms": "5"}))
out = op.map("msg", msgs, lambda m: KafkaSinkMessage(None, m.value))
op.output("out", out, KafkaSink(brokers, os.environ["BW_OUT"]))
"""

# Sends its clock (perf_counter_ns: CLOCK_MONOTONIC, the same in every process here) as
# the value of `total` records at `rate` per second. linger.ms=1: with 0, every record is a
# request of its own and the broker falls behind at 10k/s (p99 ~0.4-3 s with no pipeline at
# all); librdkafka's default is 5.
SENDER = r"""
import sys, time
sys.path.insert(0, sys.argv[4])
import confluent_kafka as ck
broker, rate, total = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
p = ck.Producer({"bootstrap.servers": broker, "linger.ms": 1})
start = time.perf_counter()
for i in range(total):
    due = start + i / rate
    while time.perf_counter() < due:
        pass
    p.produce("lat_in", str(time.perf_counter_ns()).encode())
    p.poll(0)
p.flush(10)
"""


def pylib(data):
    lib = os.path.join(data, "pylib-kafka")
    if not os.path.isdir(os.path.join(lib, "bytewax")) or not os.path.isdir(os.path.join(lib, "confluent_kafka")):
        r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", lib, "bytewax[kafka]==0.21.*"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            sys.exit(f"bench: cannot install bytewax[kafka]: {r.stderr.strip().splitlines()[-1:]}")
    return lib


class Broker:
    def __init__(self, topics):
        self.proc = subprocess.Popen([sys.executable, BROKER, "--topics", ",".join(topics)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.addr = self.proc.stdout.readline().strip()
        if not self.addr:
            sys.exit("bench: scripts/kafka-broker did not start")

    def dump(self, topic):
        out = subprocess.run([sys.executable, BROKER, "dump", self.addr, topic], check=True, capture_output=True, text=True).stdout
        return sorted(tuple(line.split("\t")[2:]) for line in out.splitlines())

    def close(self):
        self.proc.terminate()
        self.proc.wait()


def skitter_run(bin_path, script):
    """Runs a script in local mode; returns its seconds."""
    with tempfile.NamedTemporaryFile("w", suffix=".rhai", delete=False) as f:
        f.write(script)
    start = time.perf_counter()
    r = subprocess.run([bin_path, "local", "--script", f.name], capture_output=True, text=True, cwd=ROOT)
    secs = time.perf_counter() - start
    if r.returncode != 0 or "finished" not in r.stdout:
        sys.exit(f"bench: skitter failed: {r.stdout}{r.stderr}")
    return secs


def throughput(bin_path, data, words, lines, runs):
    """Kafka (4 partitions) -> split, count -> Kafka: records/s of skitter and of bytewax
    (1 process, 1 or 2 workers), on the same input topic; checks the outputs agree."""
    lib = pylib(data)
    outs = [f"sk{i}" for i in range(runs)] + ["bw1", "bw2"]
    broker = Broker(["in"] + outs)
    try:
        skitter_run(bin_path, f'print(wait(deploy(workflow().read_lines("{words}").kafka_sink("{broker.addr}", "in"))));')
        sk = []
        for i in range(runs):
            count = (f'workflow().kafka_source("{broker.addr}", "in", #{{ bounded: true, group: "sk{i}" }})'
                     f'.flat_map(|r| r.value.split(" ")).count().map(|p| #{{ word: p[0], count: p[1] }})'
                     f'.kafka_sink("{broker.addr}", "sk{i}", #{{ key: "word", value: "count" }})')
            sk.append(skitter_run(bin_path, f"print(wait(deploy({count})));"))
        work = tempfile.mkdtemp()
        with open(os.path.join(work, "bw_kafka_count.py"), "w") as f:
            f.write(BYTEWAX_COUNT)
        bw = {}
        for workers, out in ((1, "bw1"), (2, "bw2")):
            env = dict(os.environ, PYTHONPATH=lib, BW_BROKER=broker.addr, BW_OUT=out)
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "bytewax.run", "-w", str(workers), "bw_kafka_count:flow"], cwd=work, env=env,
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            bw[workers] = time.perf_counter() - start
        expected = broker.dump("sk0")
        for out in outs:
            if broker.dump(out) != expected:
                sys.exit(f"bench: the Kafka word counts disagree ({out} vs sk0)")
    finally:
        broker.close()
    best = min(bw, key=bw.get)
    return lines / statistics.median(sk), lines / min(sk), f"1 process, {best} worker(s)", lines / bw[best]


# The broker (librdkafka's mock cluster) holds a fetch for its whole wait even when records
# arrive meanwhile (Kafka answers at once): the consumer here waits 2 ms at most, and bytewax's
# source is given 5 ms, as skitter's source uses while records flow (librdkafka's default
# is 500 ms).
def latency(bin_path, data, rate=10_000, seconds=3.0, runner="skitter"):
    """Records at `rate` per second: producer -> topic lat_in -> skitter (or bytewax) map ->
    topic lat_out -> a consumer here; with runner None, the consumer reads lat_in: the
    floor of the broker and clients alone. Returns (p50, p99, max) in seconds."""
    lib = pylib(data)
    sys.path.insert(0, lib)
    import confluent_kafka as ck

    broker = Broker(["lat_in", "lat_out"])
    total = int(rate * seconds)
    try:
        out = "lat_out"
        if runner is None:
            out, runner = "lat_in", subprocess.Popen(["sleep", "3600"])
        elif runner == "bytewax":
            work = tempfile.mkdtemp()
            with open(os.path.join(work, "bw_kafka_pass.py"), "w") as f:
                f.write(BYTEWAX_PASS)
            env = dict(os.environ, PYTHONPATH=lib, BW_BROKER=broker.addr, BW_OUT="lat_out")
            runner = subprocess.Popen([sys.executable, "-m", "bytewax.run", "bw_kafka_pass:flow"], cwd=work, env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        elif runner == "skitter":
            expr = f'workflow().kafka_source("{broker.addr}", "lat_in").map(|r| r.value).kafka_sink("{broker.addr}", "lat_out")'
            runner = subprocess.Popen([bin_path, "local", "start", "--no-log", "--deploy", expr], cwd=ROOT,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        consumer = ck.Consumer({"bootstrap.servers": broker.addr, "group.id": "bench", "auto.offset.reset": "earliest",
                                "fetch.wait.max.ms": 2, "enable.auto.commit": False})
        consumer.subscribe([out])
        # The pipeline is ready once a first record made it through.
        probe = ck.Producer({"bootstrap.servers": broker.addr, "linger.ms": 0})
        deadline = time.time() + 30
        ready = False
        while not ready and time.time() < deadline:
            probe.produce("lat_in", b"0")
            probe.flush(5)
            m = consumer.poll(0.5)
            ready = m is not None and not m.error()
        if not ready:
            sys.exit("bench: the Kafka latency pipeline did not start")
        sender = subprocess.Popen([sys.executable, "-c", SENDER, broker.addr, str(rate), str(total), lib])
        lat = []
        deadline = time.time() + seconds + 30
        while len(lat) < total and time.time() < deadline:
            m = consumer.poll(0.1)
            if m is None or m.error() or m.value() == b"0":
                continue
            lat.append((time.perf_counter_ns() - int(m.value())) / 1e9)
        sender.wait()
        consumer.close()
        runner.terminate()
        runner.wait()
    finally:
        broker.close()
    if len(lat) < total:
        sys.exit(f"bench: only {len(lat)} of {total} latency records came through")
    lat.sort()
    return lat[len(lat) // 2], lat[int(len(lat) * 0.99)], lat[-1]


def figures(bin_path, data, words, lines, runs):
    """Prints the tables."""
    sk_med, sk_best, cfg, bw = throughput(bin_path, data, words, lines, runs)
    print(f"\n| Kafka -> split, count -> Kafka, {lines:,} records x 8 words, 4 partitions, one broker | records/s (median) | best |")
    print("| --- | ---: | ---: |")
    print(f"| skitter (local, kafka_source bounded -> kafka_sink) | {sk_med:,.0f} | {sk_best:,.0f} |")
    print(f"| bytewax 0.21 KafkaSource(tail=False) -> KafkaSink, {cfg} | {bw:,.0f} | |")
    print(f"| skitter / bytewax | {sk_med / bw:.1f}x | |")
    print("\n| latency at 10k records/s, producer -> Kafka -> map -> Kafka -> consumer | p50 | p99 | max |")
    print("| --- | ---: | ---: | ---: |")
    for name, runner in (("no pipeline: producer -> Kafka -> consumer (the floor)", None), ("skitter (local)", "skitter"),
                         ("bytewax 0.21 (1 worker)", "bytewax")):
        p50, p99, worst = latency(bin_path, data, runner=runner)
        print(f"| {name} | {p50 * 1000:.2f} ms | {p99 * 1000:.2f} ms | {worst * 1000:.2f} ms |")
