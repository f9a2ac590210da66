"""What scripts/soak looks for on the host after each pod lifecycle, and how
it puts the host back when something was left (so that one leak is counted
once, not again by every later lifecycle).

Everything checked is ours by construction: paths under the soak's temporary
folder, cgroups under its test-named parents, links on its test bridges,
addresses in its test subnets, processes whose command line names its folder
or that live in its cgroups. Standard library only.
"""

import os
import signal
import subprocess
import time


def mountinfo():
    """(mount point, fs type) of every mount in our namespace."""
    out = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            point = fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            out.append((point, fields[sep + 1]))
    return out


def cgroup_mounts():
    return [p for p, t in mountinfo() if t in ("cgroup", "cgroup2")]


def read(path, default=""):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return default


def pids():
    for name in os.listdir("/proc"):
        if name.isdigit():
            yield int(name)


def cmdline(pid):
    return read(f"/proc/{pid}/cmdline").replace("\0", " ").strip()


class Host:
    """The soak's footprint: `tmp` (every path), `cg_parents` (cgroup parent
    names), `bridges`, `subnets` (prefixes like "10.88.96."), `ipam_dirs`
    (host-local dataDirs), `allowed` (a callable giving the PIDs that may
    run between lifecycles: the static daemon, containerd)."""

    def __init__(self, tmp, cg_parents, bridges, subnets, ipam_dirs, allowed):
        self.tmp = tmp.rstrip("/") + "/"
        self.cg_parents = cg_parents
        self.bridges = bridges
        self.subnets = subnets
        self.ipam_dirs = ipam_dirs
        self.allowed = allowed
        self.baseline_mounts = set()
        self.allowed_paths = set()  # sockets and files of the daemons themselves

    def set_baseline(self):
        """Mounts the soak made on purpose (the small tmpfs root) are not leaks."""
        self.baseline_mounts = {p for p, _ in mountinfo() if p.startswith(self.tmp)}

    # ------------------------------------------------------------ looking

    def leaks(self, state_dirs):
        """Everything of ours left on the host, each a line naming it.
        `state_dirs`: folders that must be empty (pods/, netns/, the shim's
        root, containerd's task dirs), as (path, what)."""
        found = []
        for mnt in cgroup_mounts():
            for parent in self.cg_parents:
                top = os.path.join(mnt, parent)
                if not os.path.isdir(top):
                    continue
                leaves = [d for d, sub, _ in os.walk(top) if not sub and d != top]
                found.extend(f"cgroup {d}" for d in leaves)
                # CRI leaves its parent to the kubelet (here: the soak, which
                # removes the pod-level cgroups before looking); peapod's own
                # parent goes with its last pod.
                if not leaves and not parent.endswith("-cri"):
                    found.append(f"cgroup {top} (the empty parent was not removed)")
        for point, fstype in mountinfo():
            if point.startswith(self.tmp) and point not in self.baseline_mounts:
                found.append(f"mount {point} ({fstype})")
        for path, what in state_dirs:
            try:
                entries = sorted(os.listdir(path))
            except FileNotFoundError:
                continue
            for e in entries:
                found.append(f"{what} {os.path.join(path, e)}")
        for bridge in self.bridges:
            out = run_quiet(["ip", "-o", "link", "show", "master", bridge])
            for line in out.splitlines():
                found.append(f"link on {bridge}: {line.split(':')[1].strip()}")
        for d in self.ipam_dirs:
            if not os.path.isdir(d):
                continue
            for net in os.listdir(d):
                for e in os.listdir(os.path.join(d, net)):
                    if e == "lock" or e.startswith("last_reserved_ip"):
                        continue
                    found.append(f"IPAM lease {os.path.join(d, net, e)}")
        for line in run_quiet(["iptables-save"]).splitlines():
            if any(s in line for s in self.subnets) or any(b in line for b in self.bridges):
                found.append(f"iptables rule: {line.strip()}")
        for line in run_quiet(["nft", "list", "ruleset"]).splitlines():
            if any(s in line for s in self.subnets) or any(f'"{b}"' in line for b in self.bridges):
                found.append(f"nftables rule: {line.strip()}")
        allowed = set(self.allowed())
        me = os.getpid()
        for pid in pids():
            if pid == me or pid in allowed:
                continue
            cmd = cmdline(pid)
            cg = read(f"/proc/{pid}/cgroup")
            if self.tmp.rstrip("/") in cmd or any(f"/{p}/" in cg for p in self.cg_parents):
                if read(f"/proc/{pid}/stat").split(") ")[-1][:1] == "Z":
                    continue  # a zombie of ours, reaped by our next wait
                found.append(f"process {pid}: {cmd[:160]}")
        for dirpath, _, files in os.walk(self.tmp):
            for name in files:
                path = os.path.join(dirpath, name)
                if path in self.allowed_paths:
                    continue
                try:
                    mode = os.lstat(path).st_mode
                except OSError:
                    continue
                if (mode & 0o170000) == 0o010000:
                    found.append(f"FIFO {path}")
                elif (mode & 0o170000) == 0o140000:
                    found.append(f"socket {path}")
        return sorted(set(found))

    # ------------------------------------------------------------ cleaning

    def scrub(self, state_dirs):
        """Removes what `leaks` finds (after it was counted)."""
        allowed = set(self.allowed())
        me = os.getpid()
        for pid in pids():
            if pid == me or pid in allowed:
                continue
            cg = read(f"/proc/{pid}/cgroup")
            if self.tmp.rstrip("/") in cmdline(pid) or any(f"/{p}/" in cg for p in self.cg_parents):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        time.sleep(0.1)
        for point in sorted((p for p, _ in mountinfo() if p.startswith(self.tmp)), reverse=True):
            if point not in self.baseline_mounts:
                subprocess.run(["umount", "-l", point], stderr=subprocess.DEVNULL, check=False)
        for path, _ in state_dirs:
            if os.path.isdir(path):
                for e in os.listdir(path):
                    subprocess.run(["rm", "-rf", "--one-file-system", os.path.join(path, e)], check=False)
        for dirpath, _, files in os.walk(self.tmp):
            for name in files:
                path = os.path.join(dirpath, name)
                if path in self.allowed_paths:
                    continue
                try:
                    if (os.lstat(path).st_mode & 0o170000) in (0o010000, 0o140000):
                        os.unlink(path)
                except OSError:
                    pass
        for bridge in self.bridges:
            for line in run_quiet(["ip", "-o", "link", "show", "master", bridge]).splitlines():
                name = line.split(":")[1].strip().split("@")[0]
                subprocess.run(["ip", "link", "del", name], stderr=subprocess.DEVNULL, check=False)
        for d in self.ipam_dirs:
            if os.path.isdir(d):
                for net in os.listdir(d):
                    for e in os.listdir(os.path.join(d, net)):
                        if e != "lock" and not e.startswith("last_reserved_ip"):
                            os.unlink(os.path.join(d, net, e))
        self.remove_cgroups(keep_parents=False)

    def remove_cgroups(self, keep_parents):
        for mnt in cgroup_mounts():
            for parent in self.cg_parents:
                top = os.path.join(mnt, parent)
                if not os.path.isdir(top):
                    continue
                for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
                    if keep_parents and dirpath == top:
                        continue
                    try:
                        os.rmdir(dirpath)
                    except OSError:
                        pass

    def remove_cri_pod_cgroups(self, parent):
        """What the kubelet does after RemovePodSandbox: the pod-level cgroup."""
        for mnt in cgroup_mounts():
            top = os.path.join(mnt, parent)
            if os.path.isdir(top):
                for e in os.listdir(top):
                    p = os.path.join(top, e)
                    if os.path.isdir(p):
                        try:
                            os.rmdir(p)
                        except OSError:
                            pass  # it still has a container cgroup: a leak, counted


def run_quiet(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
