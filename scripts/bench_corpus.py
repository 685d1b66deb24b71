"""User code as users write it, skitter against bytewax 0.21 on the same
input, same run: the per-word running count in several spellings, and a
handful of pipelines from the corpus (parsing CSV-ish lines into maps,
filtering on fields, formatting with `+` and `to_string`, `if`/`switch`
bodies, closures of several statements, a user-defined keyed operator).
Every pipeline's output is checked against bytewax's. Prints each ratio
and the worst one, which is the headline. Used by `scripts/bench --only corpus`."""
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

BYTEWAX_CONFIGS = [
    ("1 process, 1 worker", ["-m", "bytewax.run"]),
    ("1 process, 2 workers", ["-m", "bytewax.run", "-w", "2"]),
    ("2 processes", ["-m", "bytewax.testing", "-p", "2"]),
]

BW_HEAD = """
import os
import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.connectors.files import FileSource, FileSink

flow = Dataflow("corpus")
lines = op.input("in", flow, FileSource(os.environ["BW_IN"]))
"""

BW_OUT = """op.output("write", op.map("keyed", out, lambda s: ("out", s)), FileSink(os.environ["BW_OUT"]))\n"""

BW_RUNNING = BW_HEAD + """
words = op.flat_map("split", lines, lambda line: line.split(" "))
keyed = op.key_on("key", words, lambda w: w)


def add(count, _word):
    count = (count or 0) + 1
    return count, count


counts = op.stateful_map("count", keyed, add)
out = op.map("line", counts, lambda kv: f"{kv[0]} {kv[1]}")
""" + BW_OUT

# The per-word running count as users spell it: each is the same pipeline
# as BW_RUNNING.
RUNNING = [
    ("interpolation (the bench's own spelling)",
     'workflow().read_lines("{inp}").flat_map(|line| line.split(" "))'
     '.keyed_reduce(|w| w, |c, w| [c + 1, [w, c + 1]], 0).map(|p| `${{p[0]}} ${{p[1]}}`).write_lines("{out}")'),
    ("`+` on a string and an integer",
     'workflow().read_lines("{inp}").flat_map(|line| line.split(" "))'
     '.keyed_reduce(|w| w, |c, w| [c + 1, [w, c + 1]], 0).map(|p| p[0] + " " + p[1]).write_lines("{out}")'),
    ("`to_string()`",
     'workflow().read_lines("{inp}").flat_map(|line| line.split(" "))'
     '.keyed_reduce(|w| w, |c, w| [c + 1, [w, c + 1]], 0).map(|p| p[0] + " " + p[1].to_string()).write_lines("{out}")'),
    ("closures of several statements",
     'workflow().read_lines("{inp}").flat_map(|line| {{ let words = line.split(" "); words }})'
     '.keyed_reduce(|w| w, |c, w| {{ let n = c + 1; [n, [w, n]] }}, 0)'
     '.map(|p| {{ let word = p[0]; let n = p[1]; word + " " + n }}).write_lines("{out}")'),
    ("a user-defined keyed operator",
     'let counter = operator("counter").strategy(keyed(|w| w)).init(|| 0)'
     '.on("in", |w| {{ this += 1; emit("out", w + " " + this); }}); '
     'workflow().read_lines("{inp}").flat_map(|line| line.split(" ")).apply(counter).write_lines("{out}")'),
]

BW_PEOPLE = BW_HEAD + """

def parse(line):
    f = line.split(",")
    return {"name": f[0], "age": int(f[1]), "city": f[2], "score": float(f[3])}


people = op.map("parse", lines, parse)
"""

CORPUS = [
    ("CSV into maps, filter on fields, format with `+`",
     'workflow().read_lines("{inp}")'
     '.map(|l| {{ let f = l.split(","); #{{ name: f[0], age: parse_int(f[1]), city: f[2], score: parse_float(f[3]) }} }})'
     '.filter(|r| r.age >= 30 && r.city != "Gent")'
     '.map(|r| r.name + " " + r.age + " " + r.score).write_lines("{out}")',
     BW_PEOPLE + """
kept = op.filter("keep", people, lambda r: r["age"] >= 30 and r["city"] != "Gent")
out = op.map("fmt", kept, lambda r: r["name"] + " " + str(r["age"]) + " " + str(r["score"]))
""" + BW_OUT),
    ("`if` and `switch` bodies, `to_upper`, float comparison",
     'workflow().read_lines("{inp}")'
     '.map(|l| {{ let f = l.split(","); #{{ name: f[0], age: parse_int(f[1]), city: f[2], score: parse_float(f[3]) }} }})'
     '.map(|r| {{ let group = if r.age < 18 {{ "minor" }} else if r.age < 65 {{ "adult" }} else {{ "senior" }}; '
     'let country = switch r.city {{ "Gent" => "BE", "Paris" | "Lyon" => "FR", _ => "other" }}; '
     'let grade = if r.score > 50.0 {{ "high" }} else {{ "low" }}; '
     '`${{r.name.to_upper()}} ${{group}} ${{country}} ${{grade}}` }})'
     '.write_lines("{out}")',
     BW_PEOPLE + """

def classify(r):
    age = r["age"]
    group = "minor" if age < 18 else ("adult" if age < 65 else "senior")
    country = {"Gent": "BE", "Paris": "FR", "Lyon": "FR"}.get(r["city"], "other")
    grade = "high" if r["score"] > 50.0 else "low"
    return f"{r['name'].upper()} {group} {country} {grade}"


out = op.map("classify", people, classify)
""" + BW_OUT),
    ("log lines: `contains`, `starts_with`, `split`, `+`",
     'workflow().read_lines("{inp}")'
     '.filter(|l| l.contains(" ERROR ") || l.contains(" WARN "))'
     '.map(|l| {{ let f = l.split(" "); let took = parse_int(f[4]); '
     'let slow = if took > 500 {{ "slow" }} else {{ "fast" }}; f[1] + ":" + f[2] + ":" + slow + ":" + (took * 2) }})'
     '.write_lines("{out}")',
     BW_HEAD + """
kept = op.filter("keep", lines, lambda l: " ERROR " in l or " WARN " in l)


def fmt(l):
    f = l.split(" ")
    took = int(f[4])
    slow = "slow" if took > 500 else "fast"
    return f[1] + ":" + f[2] + ":" + slow + ":" + str(took * 2)


out = op.map("fmt", kept, fmt)
""" + BW_OUT),
    # Records of a key meet the sum in the order the parallel parse
    # delivers them, so only each key's last line is the same in any run.
    ("a keyed sum into a map record, `+=` on a field (compared: each key's last line)",
     'workflow().read_lines("{inp}")'
     '.map(|l| {{ let f = l.split(","); #{{ city: f[2], age: parse_int(f[1]) }} }})'
     '.keyed_reduce(|r| r.city, |acc, r| {{ acc.n += 1; acc.total += r.age; [acc, r.city + " " + acc.n + " " + acc.total] }}, #{{ n: 0, total: 0 }})'
     '.write_lines("{out}")',
     BW_HEAD + """

def parse(line):
    f = line.split(",")
    return (f[2], int(f[1]))


keyed = op.map("parse", lines, parse)


def add(acc, age):
    n, total = acc or (0, 0)
    n, total = n + 1, total + age
    return (n, total), (n, total)


sums = op.stateful_map("sum", keyed, add)
out = op.map("fmt", sums, lambda kv: f"{kv[0]} {kv[1][0]} {kv[1][1]}")
""" + BW_OUT),
]

CITIES = ["Gent", "Paris", "Lyon", "Oslo", "Rome", "Lima", "Kyiv", "Pune"]
NAMES = ["ada", "bob", "cleo", "dirk", "eva", "finn", "gus", "hana", "ivo", "jan"]


def people_file(data, n):
    path = os.path.join(data, f"people-{n}.csv")
    if not os.path.exists(path):
        rng = random.Random(30)
        os.makedirs(data, exist_ok=True)
        with open(path, "w") as f:
            for _ in range(n):
                f.write(f"{rng.choice(NAMES)}{rng.randrange(1000)},{rng.randrange(1, 95)},{rng.choice(CITIES)},"
                        f"{rng.randrange(10000) / 100}\n")
    return path


def log_file(data, n):
    path = os.path.join(data, f"log-{n}.txt")
    if not os.path.exists(path):
        rng = random.Random(31)
        os.makedirs(data, exist_ok=True)
        with open(path, "w") as f:
            for i in range(n):
                level = rng.choices(["INFO", "WARN", "ERROR", "DEBUG"], [70, 15, 5, 10])[0]
                f.write(f"2026-12-02T10:{i // 60 % 60:02d}:{i % 60:02d} {level} svc{rng.randrange(12)} "
                        f"request {rng.randrange(1000)} ms\n")
    return path


def sorted_lines(path):
    with open(path) as f:
        return sorted(f.read().splitlines())


def skitter_time(bin_path, expr, runs, work):
    secs = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([bin_path, "local", "start", "--no-log", "--deploy", expr], cwd=work, check=True,
                       env=dict(os.environ, SKITTER_CHECKPOINT_DIR=os.path.join(work, "ck"), SKITTER_CHECKPOINT_INTERVAL="0"),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        secs.append(time.perf_counter() - start)
    return statistics.median(secs)


def bytewax_best(lib, flow, inp, work):
    """bytewax's best configuration on `flow`: (name, seconds, output lines)."""
    # A module per flow: Python would run a cached one of the same name.
    name = f"bw_corpus_{abs(hash(flow)) % 10**8}"
    with open(os.path.join(work, name + ".py"), "w") as f:
        f.write(flow)
    best = None
    module = name
    for name, args in BYTEWAX_CONFIGS:
        out = os.path.join(work, "bw-out.txt")
        if os.path.exists(out):
            os.remove(out)
        env = dict(os.environ, PYTHONPATH=lib, BW_IN=inp, BW_OUT=out)
        start = time.perf_counter()
        r = subprocess.run([sys.executable] + args + [f"{module}:flow"], cwd=work, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            sys.exit(f"bench: bytewax ({name}) failed:\n{r.stderr[-3000:]}")
        secs = time.perf_counter() - start
        if best is None or secs < best[1]:
            best = (name, secs, sorted_lines(out))
    return best


def last_per_key(lines):
    """Of lines `key n total`, each key's line with the largest n."""
    last = {}
    for line in lines:
        key, n, _ = line.split(" ")
        if key not in last or int(n) > int(last[key].split(" ")[1]):
            last[key] = line
    return sorted(last.values())


def figures(bin_path, data, lib, words, people, runs):
    """Rows (pipeline, skitter s, bytewax config, bytewax s); exits if an output differs."""
    work = tempfile.mkdtemp()
    out = os.path.join(work, "out.txt")
    rows = []
    cases = [(name, expr, BW_RUNNING, words) for name, expr in RUNNING]
    cases += [(name, expr, flow, log_file(data, people) if "log" in name else people_file(data, people)) for name, expr, flow in CORPUS]
    baselines = {}
    for name, expr, flow, inp in cases:
        sk = skitter_time(bin_path, expr.format(inp=inp, out=out), runs, work)
        if (flow, inp) not in baselines:
            baselines[(flow, inp)] = bytewax_best(lib, flow, inp, work)
        cfg, bw, want = baselines[(flow, inp)]
        same = (lambda a, b: last_per_key(a) == last_per_key(b)) if "last line" in name else (lambda a, b: a == b)
        if not same(sorted_lines(out), want):
            sys.exit(f"bench: skitter and bytewax disagree on `{name}`")
        rows.append((name, sk, cfg, bw))
    return rows


def print_figures(rows, words, people):
    print(f"\n| user code ({words:,} lines x 8 words; {people:,} CSV or log lines) | skitter s (median) | bytewax 0.21 best | bytewax s | skitter / bytewax |")
    print("| --- | ---: | --- | ---: | ---: |")
    for name, sk, cfg, bw in rows:
        print(f"| {name} | {sk:.2f} | {cfg} | {bw:.2f} | {bw / sk:.1f}x |")
    worst = min(rows, key=lambda r: r[3] / r[1])
    print(f"\nworst ratio: {worst[3] / worst[1]:.1f}x ({worst[0]})")


def differential(root, cases, rounds):
    """The tree against Rhai: `rounds` rounds of `cases` generated functions per test."""
    for k in range(rounds):
        env = dict(os.environ, SKITTER_DIFFERENTIAL=str(cases), SKITTER_DIFFERENTIAL_SEED=str(k + 1))
        r = subprocess.run(["cargo", "test", "--release", "--quiet", "--lib", "native::differential"], cwd=root, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            sys.exit(f"differential round {k + 1} failed:\n{r.stdout[-4000:]}")
    print(f"\ndifferential: {rounds} rounds x {cases:,} generated functions, typed functions and callbacks each: "
          "the tree agrees with Rhai wherever it answers")
