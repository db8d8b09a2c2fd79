"""The scale benchmark behind bench/run: N PodIamRoles on the test bed, with every IAM call
counted by a recording proxy between the operator and LocalStack (not by the operator's
own metrics). Writes BENCHMARKS.md and bench/benchmarks.png. Asserts nothing."""

import datetime
import http.client
import http.server
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The commit measured: read at the start, as commits made meanwhile are not in the binary.
COMMIT = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                        capture_output=True, text=True).stdout.strip()
# The binary bench/run measures: the image's, static with musl and its allocator.
BIN = os.environ["BENCH_BINARY"]
BUILD = os.environ.get("BENCH_BUILD", "static musl release build (the image's binary)")
# Short, so the rest phase sees several bulk listings (drift checks go by them).
LISTING_SECONDS = 15
# The default: each object is re-checked this often, against the latest listing.
RESYNC = "10m"
# High enough that LocalStack, not the budget, is the limit, except in the budget run.
FAST_RATE = 200
BUDGET_RATE = 20
BUDGET_N = 1000
# Memory at scale: this many PodIamRoles, in namespaces of SPREAD_PER_NAMESPACE, watched
# cluster-wide. 0 skips it.
SPREAD_N = int(os.environ.get("BENCH_SPREAD", "10000"))
SPREAD_PER_NAMESPACE = 1000
# Churn (issue 25): this many cycles of CHURN_N PodIamRoles applied to one namespace until
# Ready, then deleted until gone, RSS CHURN_SETTLE s after each step; then RSS once more
# CHURN_TAIL s after the last delete: past the Event recorder's 6-minute window and the
# operator's 30 s check that drops it. 0 skips the run.
CHURN_CYCLES = int(os.environ.get("BENCH_CHURN", "12"))
CHURN_N = 500
CHURN_RATE = 1000
CHURN_SETTLE = 10
CHURN_TAIL = int(os.environ.get("BENCH_CHURN_TAIL", "420"))
PER_ROLE_READS = {"GetRole", "ListRolePolicies", "GetRolePolicy", "ListAttachedRolePolicies"}
WRITES = {
    "CreateRole", "PutRolePolicy", "DeleteRolePolicy", "DeleteRole", "AttachRolePolicy",
    "DetachRolePolicy", "UpdateAssumeRolePolicy", "UpdateRole", "TagRole", "UntagRole",
    "PutRolePermissionsBoundary", "DeleteRolePermissionsBoundary",
}


class Recorder:
    """Counts IAM actions as LocalStack answered them."""

    def __init__(self):
        self.lock = threading.Lock()
        self.calls = Counter()

    def record(self, action):
        with self.lock:
            self.calls[action] += 1

    def take(self):
        with self.lock:
            taken, self.calls = self.calls, Counter()
        return taken

    def peek(self):
        with self.lock:
            return Counter(self.calls)


def start_proxy(upstream, recorder):
    target = urllib.parse.urlparse(upstream)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            action = urllib.parse.parse_qs(body.decode(errors="replace")).get("Action", ["?"])[0]
            upstream_conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            headers["Host"] = target.netloc
            upstream_conn.request("POST", self.path, body, headers)
            response = upstream_conn.getresponse()
            data = response.read()
            if response.status < 500:
                recorder.record(action)
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            upstream_conn.close()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def reset_oidc_provider(endpoint):
    """Deletes the test bed's IAM OIDC provider, if any: the bench's operators then create
    their own (`--oidc-provider manage`). One made by the tests carries a placeholder
    thumbprint, and an operator never changes a provider it did not create."""
    issuer = urllib.parse.urlparse(os.environ["TESTBED_OIDC_ISSUER"])
    arn = f"arn:aws:iam::000000000000:oidc-provider/{issuer.netloc}{issuer.path}".rstrip("/")
    target = urllib.parse.urlparse(endpoint)
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
    body = urllib.parse.urlencode({"Action": "DeleteOpenIDConnectProvider", "Version": "2010-05-08",
                                   "OpenIDConnectProviderArn": arn})
    connection.request("POST", "/", body, {"Content-Type": "application/x-www-form-urlencoded"})
    connection.getresponse().read()
    connection.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kubectl(*args, stdin=None):
    return subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True, check=True).stdout


def http_get(port, path):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    except OSError:
        return None, ""


class Operator:
    """The operator, watching `namespace`, or every namespace when it is None; at the default
    IAM budget when `rate` is None."""

    def __init__(self, cluster, namespace, proxy, rate):
        self.port = free_port()
        # Its own pod name: a restart takes its Lease back at once, as a restarted container does.
        env = dict(os.environ, AWS_ENDPOINT_URL=proxy, RUST_LOG="warn", POD_NAME=f"bench-{cluster}")
        self.log = open(os.path.join(ROOT, "target", f"bench-{cluster}.log"), "a")
        self.started = time.monotonic()
        scope = ["--namespaces", namespace] if namespace else []
        self.process = subprocess.Popen(
            [BIN, "run", "--cluster-name", cluster, *scope,
             "--metrics-addr", f"127.0.0.1:{self.port}", "--resync-interval", RESYNC,
             "--listing-interval", f"{LISTING_SECONDS}s",
             *(["--iam-rate", str(rate), "--iam-burst", str(rate)] if rate else []), "--concurrency", "16",
             "--oidc-provider", "manage", "--oidc-ca-file", os.environ["TESTBED_CA_FILE"]],
            env=env, stdout=subprocess.DEVNULL, stderr=self.log)

    def wait_ready(self):
        while http_get(self.port, "/readyz") != (200, "ok"):
            if time.monotonic() - self.started > 300:
                raise RuntimeError("operator not ready in 5 minutes")
            time.sleep(0.2)
        return time.monotonic() - self.started

    def rss(self):
        """(peak RSS, RSS now) in MiB."""
        with open(f"/proc/{self.process.pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f)
        return tuple(int(fields[key].split()[0]) / 1024 for key in ("VmHWM", "VmRSS"))

    def usage(self):
        """(peak RSS in MiB, CPU seconds) so far."""
        pid = self.process.pid
        peak = self.rss()[0]
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return peak, (int(fields[11]) + int(fields[12])) / ticks

    def stop(self):
        self.process.kill()
        self.process.wait()


class Watch:
    """When each PodIamRole (by name, or namespace/name when `namespace` is None) was first
    seen Ready, and when each was seen deleted. kubectl's watch can end (the API server
    closes watches): it is started again, and a listing fills in what it missed."""

    def __init__(self, namespace):
        self.ready, self.gone = {}, {}
        self.scope, self.key = (["-n", namespace], "") if namespace else (["-A"], "{.object.metadata.namespace}/")
        self.start()

    def start(self):
        self.process = subprocess.Popen(
            ["kubectl", "get", "pir", *self.scope, "--watch", "--output-watch-events", "-o",
             "jsonpath={.type} " + self.key + "{.object.metadata.name} "
             "{.object.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}"],
            stdout=subprocess.PIPE, text=True)
        threading.Thread(target=self.read, args=(self.process,), daemon=True).start()

    def read(self, process):
        for line in process.stdout:
            parts = line.split()
            if len(parts) < 2:
                continue
            now = time.monotonic()
            if parts[0] == "DELETED":
                self.gone.setdefault(parts[1], now)
            elif len(parts) > 2 and parts[2] == "True":
                self.ready.setdefault(parts[1], now)

    def catch_up(self, names):
        """The watch ended: start it again, and take from a listing what it missed."""
        self.start()
        key = self.key.replace(".object.", ".")
        listed = kubectl("get", "pir", *self.scope, "-o",
                         "jsonpath={range .items[*]}" + key + "{.metadata.name} "
                         "{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}")
        now, present = time.monotonic(), set()
        for line in listed.splitlines():
            parts = line.split()
            if parts:
                present.add(parts[0])
                if parts[1:] == ["True"]:
                    self.ready.setdefault(parts[0], now)
        for name in names:
            if name not in present:
                self.gone.setdefault(name, now)

    def wait(self, seen, names, what):
        deadline = time.monotonic() + 3600
        while not all(name in seen for name in names):
            if time.monotonic() > deadline:
                raise RuntimeError(f"not all {what} within an hour")
            if self.process.poll() is not None:
                self.catch_up(names)
            time.sleep(0.2)

    def stop(self):
        self.process.kill()


def manifests(namespace, names, table):
    docs = []
    for name in names:
        docs.append({"apiVersion": "v1", "kind": "ServiceAccount",
                     "metadata": {"name": name, "namespace": namespace}})
        docs.append({"apiVersion": "irsa.dev/v1alpha1", "kind": "PodIamRole",
                     "metadata": {"name": name, "namespace": namespace},
                     "spec": {"serviceAccountName": name, "policy": {
                         "Version": "2012-10-17", "Statement": [{
                             "Effect": "Allow", "Action": ["dynamodb:GetItem"],
                             "Resource": f"arn:aws:dynamodb:us-east-1:111122223333:table/{table}"}]}}})
    return "\n".join(json.dumps(doc) for doc in docs)


def grant(namespace):
    """The guardrail that lets the namespace's PodIamRoles have their policy (default deny)."""
    kubectl("apply", "--server-side", "--field-manager=bench", "-f", "-", stdin=json.dumps({
        "apiVersion": "irsa.dev/v1alpha1", "kind": "PodIamRoleGuardrail", "metadata": {"name": namespace},
        "spec": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                 "allowedActions": ["dynamodb:GetItem"],
                 "allowedResources": ["arn:aws:dynamodb:us-east-1:111122223333:table/*"]}}))


def apply(namespace, names, table):
    # In chunks: one request body per object would be slower, one for thousands too large.
    for start in range(0, len(names), 200):
        kubectl("apply", "--server-side", "--field-manager=bench", "-f", "-",
                stdin=manifests(namespace, names[start:start + 200], table))


def latencies(started, seen, names):
    values = sorted(seen[name] - started for name in names)
    return {"p50": statistics.median(values), "p95": values[int(0.95 * (len(values) - 1))],
            "max": values[-1]}


def per_object(calls, n):
    writes = sum(count for action, count in calls.items() if action in WRITES)
    reads = sum(count for action, count in calls.items() if action not in WRITES)
    return {"writes": writes / n, "reads": reads / n, "by_operation": dict(sorted(calls.items()))}


def totals(calls):
    return {"total": sum(calls.values()),
            "writes": sum(c for a, c in calls.items() if a in WRITES),
            "by_operation": dict(sorted(calls.items()))}


def restart(operator, recorder, result, start, settle):
    """Stops `operator`, starts another, and records its start to ready, the IAM calls of
    its first `settle` seconds and its reconciles per object then. Returns the new one."""
    operator.stop()
    recorder.take()
    operator = start()
    result["restart_to_ready"] = operator.wait_ready()
    time.sleep(settle)
    result["restart_calls"] = totals(recorder.take())
    _, text = http_get(operator.port, "/metrics")
    reconciles = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                     if line.startswith("irsa_operator_reconciles_total{"))
    result["restart_reconciles_per_object"] = reconciles / result["n"]
    return operator


def fresh_namespace(stamp, n, proxy, rate):
    """A new namespace granted what the bench's PodIamRoles use, with the names of its n
    PodIamRoles and an operator watching it: (namespace, cluster, names, operator)."""
    namespace, cluster = f"bench-{stamp}", f"bench{stamp}"
    kubectl("create", "namespace", namespace)
    grant(namespace)
    names = [f"app-{i}" for i in range(n)]
    return namespace, cluster, names, Operator(cluster, namespace, proxy, rate)


def wait_updated(recorder, n):
    """Until IAM has seen a write per object since `recorder` was last taken."""
    deadline = time.monotonic() + 3600
    while per_object(recorder.peek(), n)["writes"] < 1 and time.monotonic() < deadline:
        time.sleep(0.5)


def run_n(n, proxy, recorder, rate=FAST_RATE, phases=True):
    namespace, cluster, names, operator = fresh_namespace(f"{int(time.time())}{n}", n, proxy, rate)
    start_to_ready = operator.wait_ready()
    watch = Watch(namespace)
    result = {"n": n, "rate": rate}
    recorder.take()

    started = time.monotonic()
    apply(namespace, names, "v1")
    watch.wait(watch.ready, names, "Ready")
    result["create"] = {"all": time.monotonic() - started, **latencies(started, watch.ready, names)}
    result["create_calls"] = per_object(recorder.take(), n)
    if not phases:
        # Gone before the next run, whose operator may watch the whole cluster.
        kubectl("-n", namespace, "delete", "pir", "--all", "--wait=false")
        watch.wait(watch.gone, names, "deleted")
        operator.stop()
        watch.stop()
        return result

    # At rest: whole passes only, after the creates' own listings.
    time.sleep(LISTING_SECONDS)
    recorder.take()
    time.sleep(3 * LISTING_SECONDS)
    rest = recorder.take()
    # One pass per listing interval; a pass is several calls when IAM pages the listing.
    passes = 3
    result["rest_calls_per_pass"] = {
        "total": sum(rest.values()) / passes,
        "per_role_reads": sum(c for a, c in rest.items() if a in PER_ROLE_READS) / passes,
        "writes": sum(c for a, c in rest.items() if a in WRITES) / passes,
        "by_operation": dict(sorted(rest.items())),
    }

    # Updates: every policy changes.
    watch.ready.clear()
    started = time.monotonic()
    apply(namespace, names, "v2")
    wait_updated(recorder, n)
    result["update"] = {"all": time.monotonic() - started}
    time.sleep(2)
    result["update_calls"] = per_object(recorder.take(), n)

    # A restart with everything in sync.
    result["peak_rss_mib"], result["cpu_seconds"] = operator.usage()
    operator = restart(operator, recorder, result, lambda: Operator(cluster, namespace, proxy, rate),
                       2 * LISTING_SECONDS)
    result["start_to_ready"] = start_to_ready

    time.sleep(LISTING_SECONDS)
    recorder.take()
    started = time.monotonic()
    kubectl("-n", namespace, "delete", "pir", "--all", "--wait=false")
    watch.wait(watch.gone, names, "deleted")
    result["delete"] = {"all": time.monotonic() - started, **latencies(started, watch.gone, names)}
    result["delete_calls"] = per_object(recorder.take(), n)
    result["rest_rss_mib"] = operator.usage()[0]
    operator.stop()
    watch.stop()
    return result


def run_spread(n, proxy, recorder, clean_up):
    """Memory with n PodIamRoles in namespaces of SPREAD_PER_NAMESPACE, watched cluster-wide:
    peak while they are created, at rest, and in a restarted process. Deleted after if
    `clean_up` (more phases follow); otherwise left for the test bed to take down."""
    stamp = f"{int(time.time())}s"
    cluster = f"bench{stamp}"
    namespaces = [f"bench-{stamp}-{i}" for i in range(-(-n // SPREAD_PER_NAMESPACE))]
    for namespace in namespaces:
        kubectl("create", "namespace", namespace)
        grant(namespace)
    others = len(kubectl("get", "pir", "-A", "-o", "name").split())
    keys = []
    operator = Operator(cluster, None, proxy, FAST_RATE)
    operator.wait_ready()
    watch = Watch(None)
    recorder.take()
    started = time.monotonic()
    for index, namespace in enumerate(namespaces):
        names = [f"app-{i}" for i in range(min(SPREAD_PER_NAMESPACE, n - index * SPREAD_PER_NAMESPACE))]
        apply(namespace, names, "v1")
        keys += [f"{namespace}/{name}" for name in names]
    watch.wait(watch.ready, keys, "Ready")
    result = {"n": n, "namespaces": len(namespaces), "other_podiamroles": others,
              "create_all": time.monotonic() - started, "create_calls": per_object(recorder.take(), n)}
    time.sleep(3 * LISTING_SECONDS)
    result["peak_rss_mib"], result["rest_rss_mib"] = operator.rss()
    operator = restart(operator, recorder, result, lambda: Operator(cluster, None, proxy, FAST_RATE),
                       3 * LISTING_SECONDS)
    result["restart_peak_rss_mib"], result["restart_rest_rss_mib"] = operator.rss()
    if clean_up:
        for namespace in namespaces:
            kubectl("-n", namespace, "delete", "pir", "--all", "--wait=false")
        watch.wait(watch.gone, keys, "deleted")
    operator.stop()
    watch.stop()
    return result


def run_churn(proxy, recorder):
    """RSS over CHURN_CYCLES cycles of CHURN_N PodIamRoles created until Ready and deleted
    until gone, in one namespace; the same names each cycle, new UIDs."""
    # With the pid: two churn runs started in the same second get their own namespaces.
    stamp = f"{int(time.time())}c{os.getpid() % 1000}"
    namespace, _, names, operator = fresh_namespace(stamp, CHURN_N, proxy, CHURN_RATE)
    operator.wait_ready()
    time.sleep(CHURN_SETTLE)
    result = {"n": CHURN_N, "cycles": CHURN_CYCLES, "rate": CHURN_RATE,
              "build": BUILD,
              "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"),
              "start_rss_mib": operator.rss()[1], "with_mib": [], "after_mib": []}
    watch = Watch(namespace)
    for cycle in range(CHURN_CYCLES):
        watch.ready.clear()
        watch.gone.clear()
        apply(namespace, names, "v1")
        watch.wait(watch.ready, names, "Ready")
        time.sleep(CHURN_SETTLE)
        result["with_mib"].append(operator.rss()[1])
        kubectl("-n", namespace, "delete", "pir", "--all", "--wait=false")
        watch.wait(watch.gone, names, "deleted")
        time.sleep(CHURN_SETTLE)
        result["after_mib"].append(operator.rss()[1])
        print(f"churn cycle {cycle + 1}: {result['with_mib'][-1]:.1f} MiB with, "
              f"{result['after_mib'][-1]:.1f} MiB after", flush=True)
    time.sleep(max(CHURN_TAIL - CHURN_SETTLE, 0))
    result["peak_rss_mib"], result["tail_rss_mib"] = operator.rss()
    result["tail_seconds"] = CHURN_TAIL
    result["calls"] = totals(recorder.take())
    operator.stop()
    watch.stop()
    return result


def churn_report(churn):
    """The churn table and a verdict per goal (issue 25)."""
    if not churn:
        return []
    start, withs, afters = churn["start_rss_mib"], churn["with_mib"], churn["after_mib"]
    cycles = range(1, len(withs) + 1)
    arena = f", MALLOC_ARENA_MAX={churn['malloc_arena_max']}" if churn["malloc_arena_max"] else ""

    def verdict(ok):
        return "met" if ok else "**not met**"

    last_with, last_after = withs[-1], afters[-1]
    return [
        "## Memory under churn", "",
        f"`BENCH_CHURN={churn['cycles']}`, commit `{COMMIT}`, {churn['build']}{arena}: "
        f"{churn['cycles']} cycles of {churn['n']} PodIamRoles applied to one namespace and left "
        f"until all were Ready, then deleted and left until all were gone, with `--iam-rate "
        f"{churn['rate']} --iam-burst {churn['rate']}`. VmRSS {CHURN_SETTLE} s after each step, "
        f"in MiB; the process started at {fmt(start)} MiB.", "",
        "| cycle | " + " | ".join(str(c) for c in cycles) + " |",
        "|---" * (len(withs) + 1) + "|",
        f"| with {churn['n']} objects | " + " | ".join(f"{v:.1f}" for v in withs) + " |",
        "| after deleting them | " + " | ".join(f"{v:.1f}" for v in afters) + " |", "",
        "Goals (issue 25):", "",
        f"- cycle {len(withs)} with the objects within 10 % of cycle 1: {last_with:.1f} vs "
        f"{withs[0]:.1f} MiB ({100 * (last_with / withs[0] - 1):+.1f} %), "
        f"{verdict(last_with <= 1.1 * withs[0])};",
        f"- after the last delete within 10 % of cycle 1's: {last_after:.1f} vs {afters[0]:.1f} MiB "
        f"({100 * (last_after / afters[0] - 1):+.1f} %), {verdict(last_after <= 1.1 * afters[0])};",
        f"- {churn['tail_seconds']} s after the last delete within 2 MiB of start-up: "
        f"{churn['tail_rss_mib']:.1f} vs {start:.1f} MiB ({churn['tail_rss_mib'] - start:+.1f} MiB), "
        f"{verdict(churn['tail_rss_mib'] <= start + 2)}.", "",
        f"Peak RSS {churn['peak_rss_mib']:.1f} MiB. Where the memory goes, before and after "
        "issue 25, and the allocators measured: [bench/heap-churn.md](bench/heap-churn.md).", "",
        "![RSS under churn](bench/churn.png)", "",
    ]


def fmt(value):
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def main_report(results, budget, spread):
    """The scale, budget and memory runs' part of the report."""
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    lines = [
        "# Benchmarks",
        "",
        f"`bench/run {' '.join(str(r['n']) for r in results)}` on {datetime.date.today()}, commit "
        f"`{COMMIT}`, {os.cpu_count()} cores ({cpu}), {BUILD}, on the test bed "
        "(kube-apiserver and LocalStack on the same machine). IAM calls are counted by a "
        "recording proxy between the operator and LocalStack. Times are wall-clock on a "
        f"shared machine; call counts are exact. Bulk listing every {LISTING_SECONDS} s, resync "
        f"{RESYNC} (the default), "
        f"IAM budget {FAST_RATE}/s (LocalStack is the limit) except where noted.",
        "",
        "| N | create all (s) | create p50 / p95 / max (s) | delete all (s) | delete p50 / p95 / max (s) | peak RSS (MiB) | CPU (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        c, d = r["create"], r["delete"]
        lines.append(f"| {r['n']} | {fmt(c['all'])} | {fmt(c['p50'])} / {fmt(c['p95'])} / {fmt(c['max'])} "
                     f"| {fmt(d['all'])} | {fmt(d['p50'])} / {fmt(d['p95'])} / {fmt(d['max'])} "
                     f"| {fmt(r['peak_rss_mib'])} | {fmt(r['cpu_seconds'])} |")
    lines += ["", "IAM calls per object, and per pass at rest:", "",
              "| N | create writes / reads | update writes / reads | delete writes / reads | at rest per pass: calls / per-role reads / writes | restart: calls / writes / reconciles per object |",
              "|---|---|---|---|---|---|"]
    for r in results:
        cc, uc, dc, rc, rs = (r["create_calls"], r["update_calls"], r["delete_calls"],
                              r["rest_calls_per_pass"], r["restart_calls"])
        lines.append(f"| {r['n']} | {fmt(cc['writes'])} / {fmt(cc['reads'])} | {fmt(uc['writes'])} / {fmt(uc['reads'])} "
                     f"| {fmt(dc['writes'])} / {fmt(dc['reads'])} | {fmt(rc['total'])} / {fmt(rc['per_role_reads'])} / {fmt(rc['writes'])} "
                     f"| {rs['total']} / {rs['writes']} / {fmt(r.get('restart_reconciles_per_object', 'n/a'))} |")
    lines += ["", "Goals (issue 13): at rest ≤ ⌈roles ÷ 1,000⌉ + 2 calls per pass and 0 writes; create ≤ 2 "
              "writes + 0.1 reads; delete ≤ 2 writes + 0.1 reads. The OIDC provider check "
              "(GetOpenIDConnectProvider) runs at the resync interval, apart from the listing.", ""]
    if budget:
        calls = budget["create_calls"]["writes"] + budget["create_calls"]["reads"]
        needed = calls * budget["n"] / BUDGET_RATE
        lines += [f"Under a fixed budget of {BUDGET_RATE} IAM calls/s, {budget['n']} creates took "
                  f"{fmt(budget['create']['all'])} s for {int(calls * budget['n'])} calls: "
                  f"{fmt(budget['create']['all'] / needed)} × (calls ÷ budget) (goal ≤ 1.1).", ""]
    if spread:
        rc = spread["restart_calls"]
        lines += [f"Memory with {spread['n']} PodIamRoles in {spread['namespaces']} namespaces, watched "
                  f"cluster-wide ({spread['other_podiamroles']} other PodIamRoles in the cluster): peak RSS "
                  f"{fmt(spread['peak_rss_mib'])} MiB while creating them, {fmt(spread['rest_rss_mib'])} MiB "
                  f"at rest; after a restart, peak {fmt(spread['restart_peak_rss_mib'])} MiB, "
                  f"{fmt(spread['restart_rest_rss_mib'])} MiB at rest (goal: peak ≤ 40 MiB). The restart "
                  f"made {rc['total']} IAM calls, {rc['writes']} writes: "
                  + ", ".join(f"{a} {c}" for a, c in rc["by_operation"].items()) + ".", ""]
    lines += ["Before and after (issue 13): at commit `21c27e0` (debug build), a restart with 1,000 "
              "PodIamRoles in sync cost 4,005 IAM calls, 4 reads per role (GetRole, ListRolePolicies, "
              "GetRolePolicy, ListAttachedRolePolicies); the snapshot held every listed document; peak RSS "
              "was 136.7 MiB at N=1,000 (120.4 MiB in the process restarted with them). Now: "
              + "; ".join(f"N={r['n']}: restart {r['restart_calls']['total']} calls, peak RSS "
                          f"{fmt(r['peak_rss_mib'])} MiB" for r in results) + ".", ""]
    lines += ["Start to ready (s): " + ", ".join(f"N={r['n']}: {fmt(r['start_to_ready'])} (restart with N in sync: "
                                                 f"{fmt(r['restart_to_ready'])})" for r in results), "",
              "![create and delete times](bench/benchmarks.png)", "",
              "Raw figures, with calls by operation:", "", "```json",
              json.dumps({"runs": results, "budget": budget, "spread": spread}, indent=1), "```", ""]
    return lines


# Where the churn part of BENCHMARKS.md starts.
CHURN_MARK = "<!-- churn -->"


def write_report(results, budget, spread, churn):
    """Rewrites BENCHMARKS.md; a part whose phases did not run is kept from the last report."""
    path = os.path.join(ROOT, "BENCHMARKS.md")
    old = open(path).read() if os.path.exists(path) else ""
    old_main, _, old_churn = old.partition(CHURN_MARK + "\n")
    main = ("\n".join(main_report(results, budget, spread))
            if results or budget or spread else old_main)
    churn_part = ("\n".join(churn_report(churn) + ["```json", json.dumps(churn, indent=1), "```", ""])
                  if churn else old_churn)
    with open(path, "w") as f:
        f.write(main + (CHURN_MARK + "\n" + churn_part if churn_part else ""))


def plot(results):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ns = [r["n"] for r in results]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for phase, style in (("create", "o-"), ("delete", "s--")):
        left.plot(ns, [r[phase]["all"] for r in results], style, label=f"{phase}, all")
        left.plot(ns, [r[phase]["p95"] for r in results], style, alpha=0.5, label=f"{phase}, p95")
    left.set(xscale="log", yscale="log", xlabel="PodIamRoles", ylabel="seconds", title="Time to Ready / gone")
    left.legend()
    right.plot(ns, [r["create_calls"]["writes"] + r["create_calls"]["reads"] for r in results], "o-", label="create")
    right.plot(ns, [r["delete_calls"]["writes"] + r["delete_calls"]["reads"] for r in results], "s--", label="delete")
    right.plot(ns, [r["rest_calls_per_pass"]["total"] / r["n"] for r in results], "^:", label="at rest, per pass")
    right.set(xscale="log", yscale="log", xlabel="PodIamRoles", ylabel="IAM calls per object", title="IAM calls")
    right.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(ROOT, "bench", "benchmarks.png"), dpi=100)


def plot_churn(churn):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cycles = range(1, len(churn["with_mib"]) + 1)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(cycles, churn["with_mib"], "o-", label=f"with {churn['n']} PodIamRoles")
    ax.plot(cycles, churn["after_mib"], "s--", label="after deleting them")
    ax.axhline(churn["start_rss_mib"], color="grey", linestyle=":", label="at start-up")
    ax.plot([len(cycles) + 0.5], [churn["tail_rss_mib"]], "^", color="grey",
            label=f"{churn['tail_seconds']} s after the last delete")
    ax.set(xlabel="cycle", ylabel="VmRSS (MiB)", title=f"RSS under churn ({churn['build']})", ylim=(0, None))
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(ROOT, "bench", "churn.png"), dpi=100)


def main():
    # `bench/run 0`: none, only the budget and memory runs.
    sizes = [n for n in ([int(arg) for arg in sys.argv[1:]] or [10, 100, 1000]) if n > 0]
    recorder = Recorder()
    reset_oidc_provider(os.environ["AWS_ENDPOINT_URL"])
    proxy = start_proxy(os.environ["AWS_ENDPOINT_URL"], recorder)
    results, budget, spread, churn = [], None, None, None

    def report():
        # After every phase: a run cut short still leaves what it measured.
        write_report(results, budget, spread, churn)
        if results:
            plot(results)
        if churn:
            plot_churn(churn)

    # Up to 1,000 first, then the budget, memory and churn runs, then the largest sizes.
    for n in [n for n in sizes if n <= BUDGET_N]:
        print(f"N={n} ...", flush=True)
        results.append(run_n(n, proxy, recorder))
        print(json.dumps(results[-1]), flush=True)
        report()
    if os.environ.get("BENCH_BUDGET", "1") == "1":
        print(f"budget run: N={BUDGET_N} at {BUDGET_RATE}/s ...", flush=True)
        budget = run_n(BUDGET_N, proxy, recorder, rate=BUDGET_RATE, phases=False)
        report()
    if SPREAD_N:
        print(f"memory: N={SPREAD_N} over namespaces ...", flush=True)
        spread = run_spread(SPREAD_N, proxy, recorder, clean_up=any(n > BUDGET_N for n in sizes))
        print(json.dumps(spread), flush=True)
        report()
    if CHURN_CYCLES:
        print(f"churn: {CHURN_CYCLES} cycles of {CHURN_N} ...", flush=True)
        churn = run_churn(proxy, recorder)
        print(json.dumps(churn), flush=True)
        report()
    for n in [n for n in sizes if n > BUDGET_N]:
        print(f"N={n} ...", flush=True)
        results.append(run_n(n, proxy, recorder))
        print(json.dumps(results[-1]), flush=True)
        report()
    print("wrote BENCHMARKS.md, bench/benchmarks.png and bench/churn.png")


if __name__ == "__main__":
    main()
