"""The default IAM budget against none (issue 22): N PodIamRoles created, updated and
deleted by an operator at the default `--iam-rate`/`--iam-burst`, then by one with the budget
off, in turn, ROUNDS times; prints each phase's median seconds and their ratio. Run by
`BENCH_PACE=ROUNDS bench/run N`. Asserts nothing."""

import json
import os
import statistics
import sys
import time

from bench import (Watch, apply, fresh_namespace, kubectl, reset_oidc_provider, start_proxy,
                   Recorder, wait_updated)

# Far above what LocalStack serves: the budget never holds a call back.
BUDGET_OFF = 1_000_000


def phases(n, proxy, recorder, rate):
    """Seconds to create, update and delete n PodIamRoles, one after the other."""
    namespace, _, names, operator = fresh_namespace(f"{int(time.time())}p{n}", n, proxy, rate)
    operator.wait_ready()
    watch = Watch(namespace)
    times = {}
    started = time.monotonic()
    apply(namespace, names, "v1")
    watch.wait(watch.ready, names, "Ready")
    times["create"] = time.monotonic() - started
    recorder.take()
    started = time.monotonic()
    apply(namespace, names, "v2")
    wait_updated(recorder, n)
    times["update"] = time.monotonic() - started
    started = time.monotonic()
    kubectl("-n", namespace, "delete", "pir", "--all", "--wait=false")
    watch.wait(watch.gone, names, "deleted")
    times["delete"] = time.monotonic() - started
    operator.stop()
    watch.stop()
    return times


def main():
    n, rounds = int(sys.argv[1]), int(sys.argv[2])
    recorder = Recorder()
    reset_oidc_provider(os.environ["AWS_ENDPOINT_URL"])
    proxy = start_proxy(os.environ["AWS_ENDPOINT_URL"], recorder)
    runs = {"defaults": [], "off": []}
    for _ in range(rounds):
        for label, rate in (("defaults", None), ("off", BUDGET_OFF)):
            runs[label].append(phases(n, proxy, recorder, rate))
            print(label, json.dumps(runs[label][-1]), flush=True)
    for phase in ("create", "update", "delete"):
        medians = {label: statistics.median(r[phase] for r in runs[label]) for label in runs}
        print(f"N={n} {phase}: median {medians['defaults']:.2f} s at the defaults, "
              f"{medians['off']:.2f} s with the budget off: {medians['defaults'] / medians['off']:.2f} ×")


if __name__ == "__main__":
    main()
