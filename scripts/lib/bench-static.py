"""Driver of scripts/bench-static: times static pods from their manifest's
appearance in the folder until their containers run.

One round: N manifests are written beside the folder, the clock starts, they
are renamed into the folder (one rename each, as a config tool would; with
--in-place they are instead written straight into the folder, the clock
starting before the first is opened), and
status.json of every pod in the state root is polled every 2 ms until N pods
are Running with every container running and its pid recorded. Per pod, the
time is when it was first seen so; for the round, when the last one was. Then
the files are removed and the round ends once the pods are gone (not timed).
"""

import argparse
import json
import os
import statistics
import sys
import time

MANIFEST = """apiVersion: v1
kind: Pod
metadata: {{ name: {name} }}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: busybox
      command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
"""


def running_pods(pods_dir):
    """Names of the pods whose containers all run."""
    names = set()
    try:
        uids = os.listdir(pods_dir)
    except FileNotFoundError:
        return names
    for uid in uids:
        try:
            with open(os.path.join(pods_dir, uid, "status.json")) as f:
                status = json.load(f)
            with open(os.path.join(pods_dir, uid, "pod.json")) as f:
                pod = json.load(f)
        except (OSError, ValueError):
            continue
        apps = status.get("status", {}).get("containerStatuses", [])
        if (
            status.get("phase") == "Running"
            and apps
            and all("running" in c.get("state", {}) for c in apps)
            and all(c["name"] in status.get("pids", {}) for c in apps)
        ):
            names.add(pod["name"])
    return names


def one_round(args, n, tag):
    names = [f"{tag}-{i:02d}" for i in range(n)]
    first = args.manifests if args.in_place else args.staging
    if not args.in_place:
        for name in names:
            with open(os.path.join(args.staging, f"{name}.yaml"), "w") as f:
                f.write(MANIFEST.format(name=name))
    wanted = {f"{name}-{args.node}" for name in names}
    seen = {}
    start = time.monotonic()
    for name in names:
        if args.in_place:
            with open(os.path.join(first, f"{name}.yaml"), "w") as f:
                f.write(MANIFEST.format(name=name))
        else:
            os.rename(
                os.path.join(args.staging, f"{name}.yaml"),
                os.path.join(args.manifests, f"{name}.yaml"),
            )
    deadline = start + 120
    while len(seen) < n:
        now = time.monotonic()
        if now > deadline:
            sys.exit(f"bench-static: timed out: {len(seen)} of {n} pods running")
        for name in running_pods(args.pods) & wanted:
            seen.setdefault(name, now - start)
        time.sleep(0.002)
    for name in names:
        os.remove(os.path.join(args.manifests, f"{name}.yaml"))
    deadline = time.monotonic() + 120
    while os.listdir(args.pods):
        if time.monotonic() > deadline:
            sys.exit("bench-static: timed out waiting for the pods to go")
        time.sleep(0.02)
    per_pod = sorted(v * 1000 for v in seen.values())
    return per_pod[-1], per_pod


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--manifests", required=True)
    p.add_argument("--staging", required=True)
    p.add_argument("--pods", required=True)
    p.add_argument("--node", required=True)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--sizes", default="1,20")
    p.add_argument("--in-place", action="store_true")
    args = p.parse_args()
    os.makedirs(args.pods, exist_ok=True)
    for n in [int(s) for s in args.sizes.split(",")]:
        lasts, all_pods = [], []
        for r in range(args.rounds):
            last, per_pod = one_round(args, n, f"b{n}r{r}")
            lasts.append(last)
            all_pods.extend(per_pod)
            print(f"  {n} manifest(s), round {r + 1}: last pod running after {last:.0f} ms",
                  file=sys.stderr)
        how = "written in place" if args.in_place else "renamed in"
        label = f"1 manifest {how}" if n == 1 else f"{n} manifests {how}"
        print(
            f"{label}: all containers running {statistics.median(lasts):.0f} ms after the "
            f"file(s) appeared (median of {args.rounds}; min {min(lasts):.0f}, max {max(lasts):.0f}); "
            f"per pod median {statistics.median(all_pods):.0f} ms"
        )


if __name__ == "__main__":
    main()
