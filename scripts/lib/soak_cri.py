"""The lifecycles of scripts/soak through containerd's CRI and peapod's shim
(containerd-shim-peapod-v1, CRI handler `peapod`), on a private containerd
(scripts/containerd-up), driven as a kubelet would by examples/cri_ctl.rs.
Standard library only."""

import hashlib
import os
import subprocess
import time

from soak_pods import Mismatch, alive, expect, kill

NAMESPACE = "k8s.io"
CG_PARENT = "peapod-soak-cri"
SHIM = "containerd-shim-peapod-v1"


class CriFrontEnd:
    name = "shim"

    def __init__(self, soak):
        self.soak = soak
        self.rng = soak.rng
        self.dir = soak.path("ctrd")
        self.sock = os.path.join(self.dir, "containerd.sock")
        self.up = False
        self.seen = []

    # ------------------------------------------------------------ containerd

    def setup(self):
        if not os.access(self.soak.cri_ctl, os.X_OK):
            raise SystemExit(f"soak: {self.soak.cri_ctl} not found: cargo build --example cri_ctl (or set CRI_CTL_BIN)")
        if not os.access(os.path.join(self.soak.shim_dir, SHIM), os.X_OK):
            raise SystemExit(f"soak: {SHIM} not in {self.soak.shim_dir}: cargo build --bin {SHIM} (or set PEAPOD_SHIM_DIR)")
        env = {
            **os.environ,
            "PEAPOD_SHIM_DIR": self.soak.shim_dir,
            "PEAPOD_SHIM_ROOT": self.soak.path("shim-root"),
            "PEAPOD_CNI_BRIDGE": "psoakc0",
            "PEAPOD_CNI_NET": "10.88.95",
        }
        env.pop("PEAPOD_BIN", None)
        self.up = True
        r = subprocess.run([os.path.join(self.soak_repo(), "scripts/containerd-up"), self.dir], env=env,
                           capture_output=True, text=True, check=False)
        if r.returncode != 0:
            self.up = False
            raise SystemExit(f"soak: scripts/containerd-up failed:\n{r.stderr[-2000:]}")
        self.note_pid()
        os.makedirs(self.soak.path("cri-logs"), exist_ok=True)

    def soak_repo(self):
        return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def note_pid(self):
        with open(os.path.join(self.dir, "containerd.pid"), encoding="utf-8") as f:
            self.soak.daemons["containerd"] = int(f.read().strip())

    def restart(self):
        r = subprocess.run([os.path.join(self.soak_repo(), "scripts/containerd-restart"), self.dir],
                           capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise Mismatch(f"containerd would not start again: {r.stderr[-600:]}")
        self.note_pid()
        # containerd answers before its CRI plugin has loaded its state.
        deadline = time.monotonic() + 30
        while True:
            r = subprocess.run([self.soak.cri_ctl, "--socket", self.sock, "sandboxes"],
                               capture_output=True, text=True, check=False)
            if r.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise Mismatch(f"containerd's CRI not ready 30 s after a restart: {r.stderr.strip()[:300]}")
            time.sleep(0.05)

    def teardown(self):
        if not self.up:
            return
        self.cleanup_pods()
        subprocess.run([os.path.join(self.soak_repo(), "scripts/containerd-down"), self.dir],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        self.soak.daemons["containerd"] = None
        self.up = False

    # ------------------------------------------------------------ CRI

    def cri(self, *args, check=True, timeout=60):
        r = subprocess.run(
            [self.soak.cri_ctl, "--socket", self.sock, "--log-dir", self.soak.path("cri-logs"),
             "--cgroup-parent", f"/{CG_PARENT}", *args],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
        if check and r.returncode != 0:
            raise Mismatch(f"cri_ctl {' '.join(args[:2])} failed: {r.stderr.strip()[:400]}")
        return r.stdout.strip()

    def status(self, cid):
        state, code, reason = self.cri("status", cid).split(" ", 2)
        return state, int(code), reason

    def wait_exited(self, cid, timeout=20):
        deadline = time.monotonic() + timeout
        while True:
            st = self.status(cid)
            if st[0] == "CONTAINER_EXITED":
                return st
            if time.monotonic() > deadline:
                raise Mismatch(f"container {cid[:12]} still {st[0]} after {timeout}s")
            time.sleep(0.02)

    def pids_of(self, name, cid):
        """Processes in the cgroup of container `cid` of pod `name`."""
        key = f"/{CG_PARENT}/{name}-uid/{cid}"
        out = []
        for p in os.listdir("/proc"):
            if p.isdigit():
                try:
                    with open(f"/proc/{p}/cgroup", encoding="utf-8") as f:
                        if key in f.read():
                            out.append(int(p))
                except OSError:
                    pass
        return out

    def shims_of(self, sandbox):
        out = []
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    argv = f.read().decode(errors="replace").split("\0")
            except OSError:
                continue
            argv = [a for a in argv if a]
            # A shim's child between fork and exec still shows the shim's
            # command line; `start` and `delete` are short-lived shim runs.
            if (argv and argv[0].endswith(SHIM) and self.sock in argv and ("-id", sandbox) in zip(argv, argv[1:])
                    and argv[-1] not in ("start", "delete")):
                out.append(int(p))
        return out

    def shim_socket(self, sandbox):
        key = f"{self.sock}/{NAMESPACE}/{sandbox}"
        return f"/run/containerd/s/{hashlib.sha256(key.encode()).hexdigest()}"

    def remove(self, sandbox):
        self.cri("remove", sandbox)
        self.soak.host.remove_cri_pod_cgroups(CG_PARENT)
        sock = self.shim_socket(sandbox)
        # The shim exits once the pod's last container is deleted.
        deadline = time.monotonic() + 10
        while (self.shims_of(sandbox) or os.path.exists(sock)) and time.monotonic() < deadline:
            time.sleep(0.02)

    # ------------------------------------------------------------ lifecycles

    def state_dirs(self):
        return [
            (os.path.join(self.soak.path("shim-root"), NAMESPACE), "shim state"),
            (os.path.join(self.dir, "state/io.containerd.runtime.v2.task", NAMESPACE), "containerd task"),
        ]

    def extra_leaks(self):
        out = []
        if not self.up:
            return out
        # As the kubelet does, again and again: the pod-level cgroups.
        self.soak.host.remove_cri_pod_cgroups(CG_PARENT)
        for verb, what in (("sandboxes", "CRI sandbox"), ("containers", "CRI container")):
            r = self.cri(verb, check=False)
            out.extend(f"{what} {i}" for i in r.split())
        for sandbox in self.seen:
            if os.path.exists(self.shim_socket(sandbox)):
                out.append(f"shim socket {self.shim_socket(sandbox)} (sandbox {sandbox[:12]})")
            out.extend(f"shim process {p} (sandbox {sandbox[:12]})" for p in self.shims_of(sandbox))
        return out

    def begin(self):
        self.seen = []

    def scenarios(self):
        return [
            ("none", 2, self.clean),
            ("exit code", 2, self.exit_code),
            ("SIGKILL container", 2, self.kill_container),
            ("failing init container", 1, self.init_fails),
            ("SIGKILL pause", 2, self.kill_pause),
            ("SIGKILL shim", 3, self.kill_shim),
            ("SIGKILL containerd", 2, self.kill_containerd),
        ]

    def sandbox(self, name):
        sid = self.cri("run-sandbox", name)
        self.seen.append(sid)
        return sid

    def app(self, sid, name, cmd=("sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"), ctr="app"):
        cid = self.cri("start", sid, name, ctr, *cmd)
        return cid

    def running(self, cid):
        st = self.status(cid)
        expect(st[0] == "CONTAINER_RUNNING", f"a started app is {st}")

    def clean(self, name):
        sid = self.sandbox(name)
        try:
            cid = self.app(sid, name)
            self.running(cid)
        finally:
            self.remove(sid)

    def exit_code(self, name, k=None, ctr="app"):
        k = self.rng.choice([0, 1, 2, 42, 255]) if k is None else k
        sid = self.sandbox(name)
        try:
            cid = self.app(sid, name, ("sh", "-c", f"exit {k}"), ctr)
            st = self.wait_exited(cid)
            expect(st[1] == k, f"{ctr} exited {k}, CRI says {st}")
            expect(st[2] == ("Completed" if k == 0 else "Error"), f"{ctr} exited {k}, reason {st[2]}")
        finally:
            self.remove(sid)

    def init_fails(self, name):
        self.exit_code(name, 3, "init")

    def kill_container(self, name):
        sid = self.sandbox(name)
        try:
            cid = self.app(sid, name)
            pids = self.pids_of(name, cid)
            expect(pids, "no process in the app's cgroup")
            time.sleep(self.rng.uniform(0, 0.1))
            for p in pids:
                kill(p)
            st = self.wait_exited(cid)
            expect(st[1] == 137 and st[2] != "Completed", f"SIGKILLed app: CRI says {st}")
        finally:
            self.remove(sid)

    def kill_pause(self, name):
        sid = self.sandbox(name)
        try:
            cid = self.app(sid, name)
            pause = self.pids_of(name, sid)
            expect(pause, "no process in the sandbox's cgroup")
            for p in pause:
                kill(p)
            time.sleep(self.rng.uniform(0, 0.2))
        finally:
            self.remove(sid)
        expect(cid, "no app")

    def kill_shim(self, name):
        sid = self.sandbox(name)
        try:
            cid = self.app(sid, name)
            shims = self.shims_of(sid)
            expect(len(shims) == 1, f"one shim per pod expected, found {shims}")
            time.sleep(self.rng.uniform(0, 0.1))
            kill(shims[0])
            # containerd sees its shim gone and cleans up (`shim delete`):
            # the app must not be reported running, nor as a success.
            st = self.wait_exited(cid)
            expect(st[1] != 0 and st[2] != "Completed", f"the app of a killed shim: CRI says {st}")
        finally:
            self.remove(sid)

    def kill_containerd(self, name):
        sid = self.sandbox(name)
        try:
            cid = self.app(sid, name)
            pid = self.soak.daemons.get("containerd")
            kill(pid)
            deadline = time.monotonic() + 10
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.01)
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            self.restart()
            # The shim outlived containerd: the app still runs.
            self.running(cid)
        finally:
            self.remove(sid)

    def cleanup_pods(self):
        if not self.up:
            return
        if not alive(self.soak.daemons.get("containerd") or 0):
            try:
                self.restart()
            except Mismatch:
                return
        for sid in self.cri("sandboxes", check=False).split():
            self.cri("remove", sid, check=False)
        self.soak.host.remove_cri_pod_cgroups(CG_PARENT)

    def after(self):
        if self.up and not alive(self.soak.daemons.get("containerd") or 0):
            self.restart()
            raise Mismatch("containerd was not running after the lifecycle")

