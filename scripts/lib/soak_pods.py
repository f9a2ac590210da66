"""The lifecycles of scripts/soak through `peapod pod run` and the static-pod
daemon (`peapod static`): each builds a pod, injects its fault, checks that
the pod's status tells what happened, and removes the pod. The leak check
after each one is the caller's. Standard library only."""

import json
import os
import signal
import subprocess
import time

# Exits at once on SIGTERM (a shell as PID 1 ignores signals it does not trap).
APP_RUN = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]


class Mismatch(Exception):
    """The pod's status does not tell what happened to it."""


def manifest(name, policy="Always", app=None, init=None, liveness=None, grace=1, apps=1):
    containers = []
    for i in range(apps):
        c = {"name": "app" if i == 0 else f"app{i + 1}", "image": "busybox", "command": app or APP_RUN}
        if liveness and i == 0:
            c["livenessProbe"] = liveness
        containers.append(c)
    spec = {"restartPolicy": policy, "terminationGracePeriodSeconds": grace, "containers": containers}
    if init:
        spec["initContainers"] = [{"name": "init", "image": "busybox", "command": init}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "soak"}, "spec": spec}


def registry_manifest(soak, name, policy):
    """A pod whose app's image comes from the soak's registry."""
    m = manifest(name)
    m["spec"]["containers"][0].update(image=soak.registry.image, imagePullPolicy=policy)
    return m


def container(status, name):
    for key in ("initContainerStatuses", "containerStatuses"):
        for c in status.get(key) or []:
            if c.get("name") == name:
                return c
    return {}


def terminated(c, last=False):
    return ((c.get("lastState") if last else c.get("state")) or {}).get("terminated")


def alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # The process may be reaped between the kill and the read.
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            stat = f.read()
    except OSError:
        return False
    return bool(stat) and stat.split(") ")[-1][:1] != "Z"


def kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
        return True
    except OSError:
        return False


class PodRunner:
    """One peapod state root and how to reach its pods."""

    def __init__(self, soak, root, env):
        self.soak = soak
        self.root = root
        self.env = env

    def peapod(self, *args, env=None, timeout=90):
        e = dict(self.env)
        e.update(env or {})
        return subprocess.run(
            [self.soak.peapod, "--root", self.root, *args],
            env=e, capture_output=True, text=True, timeout=timeout, check=False,
        )

    def folders(self):
        try:
            return [os.path.join(self.root, "pods", d) for d in os.listdir(os.path.join(self.root, "pods"))]
        except FileNotFoundError:
            return []

    def status_file(self):
        """status.json of the (only) pod, or {}."""
        for d in self.folders():
            try:
                with open(os.path.join(d, "status.json"), encoding="utf-8") as f:
                    return json.load(f)
            except (OSError, ValueError):
                pass
        return {}

    def status(self):
        return self.status_file().get("status") or {}

    def wait(self, what, pred, timeout=20.0):
        """Polls pred() (every 20 ms) until it gives a true value; a timeout
        is a mismatch: the status never told what happened."""
        deadline = time.monotonic() + timeout
        while True:
            v = pred()
            if v:
                return v
            if time.monotonic() > deadline:
                raise Mismatch(f"timed out after {timeout:.0f}s waiting for {what}; status: {json.dumps(self.status())[:600]}")
            time.sleep(0.02)

    def app_running(self, name="app"):
        s = self.status_file()
        c = container(s.get("status") or {}, name)
        if "running" in (c.get("state") or {}) and name in (s.get("pids") or {}):
            return s
        return None

    def rm(self, name, check=True):
        r = self.peapod("pod", "rm", "--force", name)
        if r.returncode != 0 and check:
            raise Mismatch(f"`pod rm --force {name}` failed: {r.stderr.strip()[:400]}")
        return r

    def remove_all(self):
        """Every pod of this root, whatever state it is in (cleanup)."""
        for d in self.folders():
            self.peapod("pod", "rm", "--force", os.path.basename(d))


def expect(cond, message):
    if not cond:
        raise Mismatch(message)


# ---------------------------------------------------------------- pod run


class RunFrontEnd:
    """Lifecycles through `peapod pod run -d`, `pod rm --force` (and `pod adopt`)."""

    name = "run"

    def __init__(self, soak):
        self.soak = soak
        self.rng = soak.rng
        self.pods = PodRunner(soak, soak.path("root"), soak.env)
        self.small = PodRunner(soak, soak.path("small"), soak.env)

    def state_dirs(self):
        return [
            (os.path.join(self.pods.root, "pods"), "pod folder"),
            (os.path.join(self.small.root, "pods"), "pod folder (small root)"),
        ]

    def scenarios(self):
        return [
            ("none", 3, self.clean),
            ("exit code", 2, self.exit_code),
            ("SIGKILL container", 3, self.kill_container),
            ("SIGKILL pause", 2, self.kill_pause),
            ("SIGKILL supervisor", 3, self.kill_supervisor),
            ("SIGKILL supervisor during rm", 2, self.kill_supervisor_during_rm),
            ("failing init container", 2, self.init_fails),
            ("crash-looping app", 2, self.crash_loop),
            ("malformed manifest", 1, self.malformed),
            ("half-written manifest", 1, self.half_written),
            ("failing CNI plugin", 2, self.cni_fails),
            ("failing liveness probe", 1, self.probe_fails),
            ("full disk", 1, self.disk_full),
            ("pod rm racing a start", 3, self.rm_race),
            ("registry-stop", 3, self.registry_stop),
        ]

    def registry_manifest(self, name, policy):
        return registry_manifest(self.soak, name, policy)

    def registry_stop(self, name):
        from soak_registry import run_registry_stop  # it imports this module
        run_registry_stop(self, name)

    def network(self):
        """Half the pods on the soak's bridge network (veth, IPAM, iptables)."""
        if self.rng.random() < 0.5:
            return {"PEAPOD_CNI_CONF_DIR": self.soak.path("cni/net.d")}
        return {}

    def start(self, m, runner=None, env=None):
        runner = runner or self.pods
        path = self.soak.write_manifest(m)
        r = runner.peapod("pod", "run", "-d", "-f", path, env={**self.network(), **(env or {})})
        expect(r.returncode == 0, f"`pod run -d` failed: {r.stderr.strip()[:400]}")
        return m["metadata"]["name"]

    def clean(self, name):
        self.start(manifest(name))
        s = self.pods.wait("app running", self.pods.app_running)
        expect(container(s["status"], "app").get("restartCount") == 0, "restartCount is not 0 with no fault")
        self.pods.rm(name)

    def exit_code(self, name):
        k = self.rng.choice([0, 1, 2, 3, 42, 255])
        self.start(manifest(name, "Never", app=["sh", "-c", f"exit {k}"]))
        s = self.pods.wait("pod finished", lambda: self.pods.status_file().get("finished") and self.pods.status_file())
        t = terminated(container(s["status"], "app")) or {}
        expect(t.get("exitCode") == k, f"app exited {k}, status says {t}")
        expect(t.get("reason") == ("Completed" if k == 0 else "Error"), f"app exited {k}, reason {t.get('reason')}")
        phase = s["status"].get("phase")
        expect(phase == ("Succeeded" if k == 0 else "Failed"), f"app exited {k} under Never, phase {phase}")
        self.pods.rm(name)

    def kill_container(self, name):
        policy = self.rng.choice(["Never", "Always"])
        self.start(manifest(name, policy))
        s = self.pods.wait("app running", self.pods.app_running)
        time.sleep(self.rng.uniform(0, 0.2))
        pid = s["pids"]["app"]
        expect(kill(pid), f"app pid {pid} from status.json is not alive")
        if policy == "Never":
            s = self.pods.wait("pod finished", lambda: self.pods.status_file().get("finished") and self.pods.status_file())
            t = terminated(container(s["status"], "app")) or {}
            expect(t.get("exitCode") == 137 and t.get("reason") != "Completed", f"SIGKILLed app reported {t}")
            expect(s["status"].get("phase") == "Failed", f"SIGKILLed app under Never: phase {s['status'].get('phase')}")
        else:
            def restarted():
                s = self.pods.app_running()
                c = container((s or {}).get("status") or {}, "app")
                return s if c.get("restartCount", 0) >= 1 else None
            s = self.pods.wait("app restarted", restarted)
            c = container(s["status"], "app")
            t = terminated(c, last=True) or {}
            expect(t.get("exitCode") == 137 and t.get("reason") != "Completed", f"lastState of a SIGKILLed app: {t}")
            expect(c["restartCount"] == 1, f"one kill, restartCount {c['restartCount']}")
        self.pods.rm(name)

    def kill_pause(self, name):
        self.start(manifest(name, "Always", init=["true"]))
        s = self.pods.wait("app running", self.pods.app_running)
        sandbox = s["sandbox_pid"]
        expect(kill(sandbox), f"sandbox pid {sandbox} is not alive")

        def replaced():
            s = self.pods.app_running()
            if s and s.get("sandbox_pid") not in (None, sandbox) and container(s["status"], "app").get("restartCount", 0) >= 1:
                return s
            return None
        s = self.pods.wait("a new sandbox and the app restarted in it", replaced)
        expect(container(s["status"], "app")["restartCount"] == 1, "one sandbox death, restartCount != 1")
        self.pods.rm(name)

    def kill_supervisor(self, name):
        self.start(manifest(name))
        s = self.pods.wait("app running", self.pods.app_running)
        app = s["pids"]["app"]
        expect(kill(s["supervisor_pid"]), "supervisor not alive")
        self.pods.wait("supervisor gone", lambda: not alive(s["supervisor_pid"]), 5)
        expect(alive(app), "the app died with its supervisor")
        if self.rng.random() < 0.5:
            r = self.pods.peapod("pod", "adopt", name)
            expect(r.returncode == 0, f"`pod adopt` failed: {r.stderr.strip()[:300]}")
            s2 = self.pods.wait("adopted", lambda: (self.pods.status_file().get("supervisor_pid") != s["supervisor_pid"]) and self.pods.app_running())
            c = container(s2["status"], "app")
            expect(s2["pids"]["app"] == app and c.get("restartCount") == 0, f"adoption restarted the app: {c}")
        self.pods.rm(name)

    def kill_supervisor_during_rm(self, name):
        self.start(manifest(name))
        s = self.pods.wait("app running", self.pods.app_running)
        rm = subprocess.Popen(
            [self.soak.peapod, "--root", self.pods.root, "pod", "rm", "--force", name],
            env=self.pods.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        time.sleep(self.rng.uniform(0, 0.15))
        kill(s["supervisor_pid"])
        _, err = rm.communicate(timeout=90)
        if rm.returncode != 0 and self.pods.folders():
            self.pods.rm(name, check=False)
            raise Mismatch(f"`pod rm --force` with its supervisor killed under it failed: {err.strip()[:400]}")

    def init_fails(self, name):
        policy = self.rng.choice(["Never", "Always"])
        self.start(manifest(name, policy, init=["sh", "-c", "exit 3"]))
        if policy == "Never":
            s = self.pods.wait("pod finished", lambda: self.pods.status_file().get("finished") and self.pods.status_file())
            t = terminated(container(s["status"], "init")) or {}
            expect(t.get("exitCode") == 3, f"init exited 3, status says {t}")
            expect(s["status"].get("phase") == "Failed", f"failed init under Never: phase {s['status'].get('phase')}")
        else:
            s = self.pods.wait("init restarted", lambda: container(self.pods.status(), "init").get("restartCount", 0) >= 1 and self.pods.status_file())
            t = terminated(container(s["status"], "init"), last=True) or terminated(container(s["status"], "init")) or {}
            expect(t.get("exitCode") == 3, f"init exited 3, status says {t}")
            expect(s["status"].get("phase") == "Pending", f"init failing: phase {s['status'].get('phase')}")
        app = container(self.pods.status(), "app")
        expect("running" not in (app.get("state") or {}) and not terminated(app), f"the app ran although its init failed: {app}")
        self.pods.rm(name)

    def crash_loop(self, name):
        self.start(manifest(name, self.rng.choice(["Always", "OnFailure"]), app=["sh", "-c", "exit 2"]))
        s = self.pods.wait("two restarts", lambda: container(self.pods.status(), "app").get("restartCount", 0) >= 2 and self.pods.status_file())
        c = container(s["status"], "app")
        t = terminated(c, last=True) or terminated(c) or {}
        expect(t.get("exitCode") == 2 and t.get("reason") == "Error", f"crash-looping app (exit 2): {t}")
        expect(s["status"].get("phase") not in ("Succeeded",), "crash-looping pod Succeeded")
        self.pods.rm(name)

    def refused(self, name, text, kind):
        path = os.path.join(self.soak.path("manifests-run"), f"{name}.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        r = self.pods.peapod("pod", "run", "-d", "-f", path)
        expect(r.returncode != 0, f"a {kind} was run: {text[:200]!r}")
        expect("panicked" not in r.stderr, f"a {kind} made peapod panic: {r.stderr[:400]}")
        expect(not self.pods.folders(), f"a refused {kind} left a pod folder")

    def malformed(self, name):
        m = manifest(name)
        variants = [
            "apiVersion: v1\nkind: Pod\nmetadata: {name: " + name + "}\nspec: {containers: [{name: app, image: busybox\n",
            "\t- not: yaml: at all",
            json.dumps({**m, "spec": {"containers": []}}),
            json.dumps({**m, "metadata": {"name": "Bad_Name!"}}),
            json.dumps({**m, "spec": {**m["spec"], "restartPolicy": "Sometimes"}}),
            json.dumps({**m, "kind": "Deployment"}),
            "\0\1\2binary",
        ]
        self.refused(name, self.rng.choice(variants), "malformed manifest")

    def half_written(self, name):
        text = json.dumps(manifest(name))
        cut = self.rng.randrange(1, len(text) - 1)
        self.refused(name, text[:cut], "half-written manifest")

    def cni_fails(self, name):
        self.start(manifest(name), env={"PEAPOD_CNI_CONF_DIR": self.soak.path("cni/fail.d")})

        def failed():
            for c in self.pods.status().get("conditions") or []:
                if c.get("type") == "PodReadyToStartContainers" and c.get("reason") == "FailedCreatePodSandBox":
                    return self.pods.status_file()
            return None
        s = self.pods.wait("FailedCreatePodSandBox", failed)
        expect(s["status"].get("phase") == "Pending", f"no network: phase {s['status'].get('phase')}")
        expect("app" not in (s.get("pids") or {}), "the app runs without its network")
        self.pods.rm(name)

    def probe_fails(self, name):
        probe = {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 1}
        self.start(manifest(name, "Always", app=["sleep", "3600"], liveness=probe, grace=0))
        s = self.pods.wait("restart after the probe failed", lambda: container(self.pods.status(), "app").get("restartCount", 0) >= 1 and self.pods.status_file(), 30)
        t = terminated(container(s["status"], "app"), last=True) or {}
        # `sleep` as PID 1 ignores SIGTERM: killed at the 2 s minimum.
        expect(t.get("exitCode") == 137 and t.get("reason") == "Error", f"killed by its liveness probe: {t}")
        self.pods.rm(name)

    def fill(self):
        path = os.path.join(self.small.root, "filler")
        with open(path, "ab") as f:
            chunk = b"\0" * 65536
            try:
                while True:
                    f.write(chunk)
                    f.flush()
            except OSError:
                pass
        return path

    def disk_full(self, name):
        if self.rng.random() < 0.5:
            filler = self.fill()
            path = self.soak.write_manifest(manifest(name))
            r = self.small.peapod("pod", "run", "-d", "-f", path)
            expect("panicked" not in r.stderr, f"a full state folder made peapod panic: {r.stderr[:400]}")
            os.unlink(filler)
            if r.returncode == 0 or self.small.folders():
                self.small.rm(name)
        else:
            path = self.soak.write_manifest(manifest(name))
            r = self.small.peapod("pod", "run", "-d", "-f", path)
            expect(r.returncode == 0, f"`pod run -d` on the small root failed: {r.stderr.strip()[:300]}")
            s = self.small.wait("app running", self.small.app_running)
            filler = self.fill()
            kill(s["pids"]["app"])
            time.sleep(self.rng.uniform(0, 0.3))
            r = self.small.rm(name, check=False)
            os.unlink(filler)
            if r.returncode != 0:
                self.small.rm(name, check=False)
                raise Mismatch(f"`pod rm --force` on a full state folder failed: {r.stderr.strip()[:300]}")

    def rm_race(self, name):
        path = self.soak.write_manifest(manifest(name, init=["true"]))
        run = subprocess.Popen(
            [self.soak.peapod, "--root", self.pods.root, "pod", "run", "-d", "-f", path],
            env={**self.pods.env, **self.network()}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        time.sleep(self.rng.uniform(0, 0.3))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = self.pods.rm(name, check=False)
            if r.returncode == 0:
                break
            if run.poll() is not None and not self.pods.folders():
                break
            if "panicked" in r.stderr:
                raise Mismatch(f"`pod rm` racing a start panicked: {r.stderr[:400]}")
            time.sleep(0.01)
        run.communicate(timeout=90)
        if self.pods.folders():
            # The start won after all the removals: one more, as a user would.
            self.pods.rm(name)

    def cleanup_pods(self):
        filler = os.path.join(self.small.root, "filler")
        if os.path.exists(filler):
            os.unlink(filler)
        self.pods.remove_all()
        self.small.remove_all()

    def teardown(self):
        self.cleanup_pods()
