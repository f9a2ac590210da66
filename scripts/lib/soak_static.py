"""The lifecycles of scripts/soak through the static-pod daemon (`peapod
static`): a manifest appears in its folder, a fault hits, the file goes, and
the pod must go with it. Standard library only."""

import json
import os
import signal
import subprocess
import time

from soak_registry import static_registry_stop
from soak_pods import Mismatch, PodRunner, alive, container, expect, kill, manifest, registry_manifest, terminated

NODE = "soak"


def to_yaml(m):
    """The manifest as block YAML, one container per list item, so that a
    file cut after its first container is still a valid pod of one."""
    spec = m["spec"]
    lines = [
        "apiVersion: v1",
        "kind: Pod",
        "metadata:",
        f"  name: {m['metadata']['name']}",
        "  namespace: soak",
        "spec:",
        f"  restartPolicy: {spec['restartPolicy']}",
        f"  terminationGracePeriodSeconds: {spec['terminationGracePeriodSeconds']}",
        "  containers:",
    ]
    for c in spec["containers"]:
        lines += [f"  - name: {c['name']}", f"    image: {c['image']}", f"    command: {json.dumps(c['command'])}"]
        if "imagePullPolicy" in c:
            lines.append(f"    imagePullPolicy: {c['imagePullPolicy']}")
    return "\n".join(lines) + "\n"


class StaticFrontEnd:
    name = "static"

    def __init__(self, soak):
        self.soak = soak
        self.rng = soak.rng
        self.root = soak.path("static-root")
        self.dir = soak.path("static-manifests")
        self.env = {**soak.env, "PEAPOD_CGROUP_PREFIX": "peapod-soak-static"}
        self.pods = PodRunner(soak, self.root, self.env)
        self.proc = None

    def setup(self):
        os.makedirs(self.dir, exist_ok=True)
        os.makedirs(self.root, exist_ok=True)
        self.start_daemon()

    def start_daemon(self):
        log = open(self.soak.path("static.log"), "a", encoding="utf-8")
        self.proc = subprocess.Popen(
            [self.soak.peapod, "--root", self.root, "static", "--manifest-dir", self.dir,
             "--node-name", NODE, "--rescan-seconds", "2"],
            env=self.env, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        )
        log.close()
        self.soak.daemons["static"] = self.proc.pid
        status = os.path.join(self.root, "static", "status.json")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with open(status, encoding="utf-8") as f:
                    s = json.load(f)
                if s.get("pid") == self.proc.pid and s.get("running"):
                    return
            except (OSError, ValueError):
                pass
            if self.proc.poll() is not None:
                raise SystemExit(f"soak: the static daemon exited with {self.proc.returncode}; see {self.soak.path('static.log')}")
            time.sleep(0.02)
        raise SystemExit("soak: the static daemon did not write its status in 20 s")

    def stop_daemon(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.soak.daemons["static"] = None

    def daemon_status(self):
        try:
            with open(os.path.join(self.root, "static", "status.json"), encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def file_state(self, path):
        return str((self.daemon_status().get("files") or {}).get(path, {}).get("state", "")).lower()

    def state_dirs(self):
        return [(os.path.join(self.root, "pods"), "pod folder (static)")]

    def scenarios(self):
        return [
            ("none", 3, self.clean),
            ("SIGKILL container", 2, self.kill_container),
            ("SIGKILL supervisor", 2, self.kill_supervisor),
            ("SIGKILL static daemon", 3, self.kill_daemon),
            ("crash-looping app", 1, self.crash_loop),
            ("half-written manifest", 2, self.half_written),
            ("malformed manifest", 1, self.malformed),
            ("registry-stop", 2, self.registry_stop),
        ]

    def registry_manifest(self, name, policy):
        return registry_manifest(self.soak, name, policy)

    def yaml(self, m):
        return to_yaml(m)

    def registry_stop(self, name):
        static_registry_stop(self, name)

    def deliver(self, name, text):
        """Written beside the folder and renamed in, as the README advises."""
        path = os.path.join(self.dir, f"{name}.yaml")
        tmp = os.path.join(self.soak.tmp, f"{name}.yaml.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.rename(tmp, path)
        return path

    def withdraw(self, path):
        os.unlink(path)
        self.pods.wait("the static pod removed with its file", lambda: not self.pods.folders(), 30)

    def running(self, name):
        self.pods.wait(f"static pod {name}-{NODE} running", self.pods.app_running, 30)
        return self.pods.status_file()

    def clean(self, name):
        path = self.deliver(name, to_yaml(manifest(name)))
        s = self.running(name)
        expect(container(s["status"], "app").get("restartCount") == 0, "restartCount is not 0 with no fault")
        self.withdraw(path)

    def kill_container(self, name):
        path = self.deliver(name, to_yaml(manifest(name)))
        s = self.running(name)
        kill(s["pids"]["app"])
        s = self.pods.wait("app restarted", lambda: container(self.pods.status(), "app").get("restartCount", 0) >= 1 and self.pods.app_running())
        t = terminated(container(s["status"], "app"), last=True) or {}
        expect(t.get("exitCode") == 137 and t.get("reason") != "Completed", f"lastState of a SIGKILLed app: {t}")
        self.withdraw(path)

    def kill_supervisor(self, name):
        path = self.deliver(name, to_yaml(manifest(name)))
        s = self.running(name)
        kill(s["supervisor_pid"])
        self.pods.wait("supervisor gone", lambda: not alive(s["supervisor_pid"]), 5)
        if self.rng.random() < 0.5:
            # The daemon's rescan (every 2 s here) gives the pod a new supervisor.
            s2 = self.pods.wait("the pod adopted", lambda: self.pods.status_file().get("supervisor_pid") not in (None, s["supervisor_pid"]) and alive(self.pods.status_file()["supervisor_pid"]) and self.pods.app_running(), 15)
            expect(s2["pids"]["app"] == s["pids"]["app"], "adoption restarted the app")
        self.withdraw(path)

    def kill_daemon(self, name):
        path = self.deliver(name, to_yaml(manifest(name)))
        s = self.running(name)
        self.stop_daemon(signal.SIGKILL)
        removed = self.rng.random() < 0.4
        if removed:
            os.unlink(path)
        self.start_daemon()
        if removed:
            self.pods.wait("the pod of a file removed while the daemon was down gone", lambda: not self.pods.folders(), 30)
            return
        s2 = self.pods.wait("the pod kept", self.pods.app_running, 10)
        c = container(s2["status"], "app")
        expect(s2["pids"]["app"] == s["pids"]["app"] and c.get("restartCount") == 0,
               f"a daemon restart restarted the pod: {c}")
        self.withdraw(path)

    def crash_loop(self, name):
        path = self.deliver(name, to_yaml(manifest(name, app=["sh", "-c", "exit 2"])))
        s = self.pods.wait("two restarts", lambda: container(self.pods.status(), "app").get("restartCount", 0) >= 2 and self.pods.status_file(), 30)
        t = terminated(container(s["status"], "app"), last=True) or {}
        expect(t.get("exitCode") == 2 and t.get("reason") == "Error", f"crash-looping app (exit 2): {t}")
        self.withdraw(path)

    def half_written(self, name):
        text = to_yaml(manifest(name, apps=2))
        cut = text.index("  - name: app2")
        path = os.path.join(self.dir, f"{name}.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text[:cut])
            f.flush()
            # Still open: the daemon must not run the first half.
            time.sleep(self.rng.uniform(0.2, 0.5))
            expect(not self.pods.folders(), "the daemon ran a manifest still being written")
            f.write(text[cut:])
        s = self.running(name)
        self.pods.wait("both containers running", lambda: self.pods.app_running("app2"), 20)
        names = sorted(c["name"] for c in s["status"].get("containerStatuses", []))
        expect(names == ["app", "app2"], f"the pod of a manifest written in two steps has containers {names}")
        self.withdraw(path)

    def malformed(self, name):
        text = self.rng.choice([
            "apiVersion: v1\nkind: Pod\nmetadata: {name: " + name + "}\nspec: {containers: [{name: app\n",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: " + name + "}\nspec: {containers: []}\n",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: " + name + "}\nspec:\n  containers:\n  - name: app\n    image: busybox\n    bogus: 1\n",
        ])
        path = self.deliver(name, text)
        self.pods.wait("the file reported invalid", lambda: self.file_state(path) == "invalid", 10)
        expect(not self.pods.folders(), "an invalid manifest started a pod")
        os.unlink(path)

    def after(self):
        if self.proc and self.proc.poll() is not None:
            raise Mismatch(f"the static daemon exited with {self.proc.returncode}")

    def cleanup_pods(self):
        for n in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, n))
        deadline = time.monotonic() + 30
        while self.pods.folders() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.pods.remove_all()

    def teardown(self):
        self.cleanup_pods()
        self.stop_daemon()
        self.pods.remove_all()
