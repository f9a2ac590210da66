#!/usr/bin/env python3
"""Timing driver for scripts/bench (run by it, inside a private mount namespace).

For each runtime NAME=PATH it times `PATH --root STATE/NAME run --bundle B ID`
(create + start + wait + delete of /bin/true), interleaving the runtimes
round-robin (the order rotates every round so no runtime always follows the
same one), after a few warm-up rounds. Each run gets its own container id and
cgroupsPath (/peapod-bench/NAME-N); config.json is rewritten before the timer
starts. After every run (outside the timed part) it checks that the runtime
exited 0, left no state for the container and removed its leaf cgroup in
every mounted cgroup hierarchy, so that `run` really includes `delete`.

Exit status: 0 when every run succeeded (whether or not the targets are met),
1 when a runtime failed, 2 on bad usage, 130 on SIGINT, 143 on SIGTERM.
Standard library only.
"""

import argparse
import json
import os
import platform
import signal
import statistics
import sys
import time

CGROUP_PARENT = "peapod-bench"


class Failure(Exception):
    pass


def cgroup_mounts():
    """Mount points of the cgroup and cgroup2 hierarchies mounted in our namespace."""
    mounts = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] in ("cgroup", "cgroup2"):
                mounts.append(fields[4].replace("\\040", " "))
    return mounts


def write_config(template, bundle, cgroup_path):
    config = dict(template)
    linux = dict(config["linux"])
    linux["cgroupsPath"] = cgroup_path
    config["linux"] = linux
    path = os.path.join(bundle, "config.json")
    tmp = path + ".new"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=1)
    os.replace(tmp, path)


class Bench:
    def __init__(self, args):
        self.args = args
        self.runtimes = []  # (name, path, state root)
        for spec in args.runtime:
            name, _, path = spec.partition("=")
            if not name or not path:
                raise SystemExit(f"bench-driver: bad --runtime {spec!r}, expected NAME=PATH")
            root = os.path.join(args.tmp, "state", name)
            os.makedirs(root, exist_ok=True)
            self.runtimes.append((name, path, root))
        with open(args.template, encoding="utf-8") as f:
            self.template = json.load(f)
        self.bundle = os.path.join(args.tmp, "bundle")
        self.env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
        self.errlog = os.path.join(args.tmp, "stderr.log")
        self.mounts = cgroup_mounts()
        self.current = None  # (name, path, root, id, cgroup) of the run in flight
        self.child = None

    # ------------------------------------------------------------ one run

    def run_once(self, rt, label):
        name, path, root = rt
        cid = f"bench-{name}-{label}"
        cgroup = f"/{CGROUP_PARENT}/{name}-{label}"
        write_config(self.template, self.bundle, cgroup)
        argv = [path, "--root", root, "run", "--bundle", self.bundle, cid]
        err_fd = os.open(self.errlog, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        null_fd = os.open(os.devnull, os.O_RDWR)
        actions = [
            (os.POSIX_SPAWN_DUP2, null_fd, 0),
            (os.POSIX_SPAWN_DUP2, null_fd, 1),
            (os.POSIX_SPAWN_DUP2, err_fd, 2),
        ]
        self.current = (name, path, root, cid, cgroup)
        try:
            t0 = time.perf_counter_ns()
            self.child = os.posix_spawn(path, argv, self.env, file_actions=actions)
            _, status = os.waitpid(self.child, 0)
            t1 = time.perf_counter_ns()
            self.child = None
        finally:
            os.close(err_fd)
            os.close(null_fd)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            with open(self.errlog, encoding="utf-8", errors="replace") as f:
                err = f.read().strip()
            raise Failure(
                f"{name}: `{' '.join(argv)}` exited with {code}"
                + (f":\n    {err}" if err else " (no stderr)")
            )
        self.check_deleted(name, root, cid, cgroup)
        self.current = None
        return (t1 - t0) / 1e6

    def check_deleted(self, name, root, cid, cgroup):
        if os.path.lexists(os.path.join(root, cid)):
            raise Failure(
                f"{name}: `run` left state for {cid} in {root}: it does not delete on exit, "
                "so the comparison would not be fair"
            )
        for mnt in self.mounts:
            leaf = mnt + cgroup
            if os.path.isdir(leaf):
                raise Failure(f"{name}: `run` left the cgroup {leaf} behind")

    # ------------------------------------------------------------ cleanup

    def cleanup_current(self):
        """After an interruption: end the run in flight and remove what it left."""
        if self.current is None:
            return
        name, path, root, cid, cgroup = self.current
        if self.child is not None:
            try:
                # The runtime got the terminal's SIGINT too; give it a moment to
                # finish on its own, then end it (only this one pid, ours).
                for _ in range(100):
                    pid, _ = os.waitpid(self.child, os.WNOHANG)
                    if pid:
                        break
                    time.sleep(0.02)
                else:
                    os.kill(self.child, signal.SIGKILL)
                    os.waitpid(self.child, 0)
            except ChildProcessError:
                pass
            self.child = None
        if os.path.lexists(os.path.join(root, cid)):
            pid = os.posix_spawn(
                path,
                [path, "--root", root, "delete", "--force", cid],
                self.env,
                file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)],
            )
            os.waitpid(pid, 0)
        for mnt in self.mounts:
            try:
                os.rmdir(mnt + cgroup)
            except OSError:
                pass
        self.current = None

    # ------------------------------------------------------------ the benchmark

    def order(self, round_no):
        k = round_no % len(self.runtimes)
        return self.runtimes[k:] + self.runtimes[:k]

    def main(self):
        a = self.args
        names = [r[0] for r in self.runtimes]
        print(
            f"bench: {' '.join(names)}: {a.n} runs each after {a.warmup} warm-up runs, "
            "round-robin (order rotated every round)",
            flush=True,
        )
        for w in range(a.warmup):
            for rt in self.order(w):
                self.run_once(rt, f"w{w}")
        times = {n: [] for n in names}
        step = max(1, a.n // 10)
        started = time.monotonic()
        for i in range(a.n):
            for rt in self.order(i):
                times[rt[0]].append(self.run_once(rt, str(i)))
            if a.progress and ((i + 1) % step == 0 or i + 1 == a.n):
                print(
                    f"  {i + 1}/{a.n} rounds ({time.monotonic() - started:.1f} s)",
                    file=sys.stderr,
                    flush=True,
                )
        self.report(times)
        if a.json:
            with open(a.json, "w", encoding="utf-8") as f:
                json.dump(times, f)

    def report(self, times):
        def p90(xs):
            return statistics.quantiles(xs, n=10, method="inclusive")[8]

        stats = {}
        for name, xs in times.items():
            stats[name] = {
                "median": statistics.median(xs),
                "p90": p90(xs),
                "mean": statistics.fmean(xs),
                "min": min(xs),
                "max": max(xs),
                "stdev": statistics.stdev(xs) if len(xs) > 1 else 0.0,
            }
        print()
        print(f"create+start+wait+delete of /bin/true, {len(next(iter(times.values())))} runs each, ms")
        print("(checked after every run: exit 0, no state left, leaf cgroup removed: `run` deleted it)")
        cols = ["median", "p90", "mean", "min", "max", "stdev"]
        print(f"{'runtime':<10}" + "".join(f"{c:>9}" for c in cols))
        for name, s in stats.items():
            print(f"{name:<10}" + "".join(f"{s[c]:>9.2f}" for c in cols))
        if "peapod" not in stats:
            return
        pea = stats["peapod"]
        print()
        verdicts = []
        for other, limit in (("crun", 1.0), ("runc", 0.5)):
            if other not in stats:
                continue
            o = stats[other]
            print(
                f"peapod/{other:<5} median {pea['median'] / o['median']:.2f}x   "
                f"p90 {pea['p90'] / o['p90']:.2f}x   mean {pea['mean'] / o['mean']:.2f}x"
            )
            ok = pea["median"] <= limit * o["median"]
            target = f"{limit:g} x {other} median" if limit != 1.0 else f"{other} median"
            verdicts.append(
                (ok, f"peapod median {pea['median']:.2f} ms <= {target} ({limit * o['median']:.2f} ms)")
            )
        print()
        for ok, text in verdicts:
            print(f"{'PASS' if ok else 'FAIL'}: {text}")
        if verdicts:
            overall = all(ok for ok, _ in verdicts)
            print(f"{'PASS' if overall else 'FAIL'}: targets {'met' if overall else 'missed'}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tmp", required=True, help="scratch folder (holds bundle/, state/)")
    p.add_argument("--template", required=True, help="config.json template")
    p.add_argument("--runtime", action="append", required=True, help="NAME=PATH (repeatable)")
    p.add_argument("-n", type=int, default=200)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--json", help="write the raw times (ms) here")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args()
    if args.n < 2 or args.warmup < 0:
        p.error("-n must be >= 2 and --warmup >= 0")

    stopping = []

    def on_signal(_signum, _frame):
        # The first SIGINT or SIGTERM interrupts the benchmark; later ones
        # (scripts/bench passes Ctrl-C on as SIGTERM) must not cut the cleanup short.
        if not stopping:
            stopping.append(True)
            raise KeyboardInterrupt

    # Installed also when started with SIGINT ignored (as a background job).
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    bench = Bench(args)
    print(
        f"bench: kernel {platform.release()}, {os.cpu_count()} CPUs, cgroup hierarchies here: "
        + (", ".join(m.rsplit("/", 1)[-1] for m in bench.mounts) or "none"),
        flush=True,
    )
    try:
        bench.main()
    except Failure as e:
        print(f"bench: error: {e}", file=sys.stderr)
        bench.cleanup_current()
        return 1
    except KeyboardInterrupt:
        print("\nbench: interrupted; cleaning up", file=sys.stderr)
        bench.cleanup_current()
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
