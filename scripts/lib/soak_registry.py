"""The registry of scripts/soak: Debian's docker-registry on loopback, with
its config and storage in the soak's folder, fed once by skopeo with an
image of its own (busybox plus a few MiB of seeded noise, so that a pull has
a layer to fetch and the registry can stop in the middle of it). The
`registry-stop` lifecycles of `pod run` and of the static daemon, and what
they check in the image store afterwards. Standard library only."""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

from soak_pods import Mismatch, container, expect

REPO_IMAGE = "soak/app:v1"
# Big enough that a pull is still fetching when the registry stops.
NOISE_BYTES = 6 << 20
PULL_FAILED = ("ErrImagePull", "ImagePullBackOff")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """One docker-registry process, stopped and started again by the faults."""

    def __init__(self, soak):
        self.soak = soak
        self.dir = soak.path("registry")
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.image = f"{self.host}/{REPO_IMAGE}"
        self.proc = None
        self.frozen = False
        self.image_id = None  # the config digest the registry serves

    def env(self):
        """What every peapod of the soak gets: this registry over plain HTTP,
        and no host-wide registry configuration or credentials."""
        certs = os.path.join(self.dir, "certs.d")
        return {
            "PEAPOD_INSECURE_REGISTRIES": self.host,
            "PEAPOD_REGISTRY_HOSTS_DIR": certs,
            "PEAPOD_REGISTRY_CA_DIR": certs,
            "PEAPOD_REGISTRY_CREDENTIALS": os.path.join(self.dir, "no-credentials.json"),
        }

    def setup(self):
        for tool in ("docker-registry", "skopeo"):
            if not shutil.which(tool):
                raise SystemExit(f"soak: {tool} is missing: run scripts/setup")
        os.makedirs(os.path.join(self.dir, "data"))
        os.makedirs(os.path.join(self.dir, "certs.d"))
        with open(os.path.join(self.dir, "no-credentials.json"), "w", encoding="utf-8") as f:
            f.write('{"auths": {}}\n')
        with open(os.path.join(self.dir, "config.yml"), "w", encoding="utf-8") as f:
            f.write("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                    f"    rootdirectory: {self.dir}/data\n  delete:\n    enabled: true\n"
                    f"http:\n  addr: {self.host}\n  secret: peapod-soak\n")
        self.start()
        archive = self.build_image()
        r = subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci-archive:{archive}",
                            f"docker://{self.image}"], capture_output=True, text=True, timeout=120, check=False)
        if r.returncode != 0:
            raise SystemExit(f"soak: skopeo copy to {self.image}: {r.stderr.strip()}")
        os.unlink(archive)
        r = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{self.image}"],
                           capture_output=True, text=True, timeout=60, check=False)
        if r.returncode != 0:
            raise SystemExit(f"soak: skopeo inspect {self.image}: {r.stderr.strip()}")
        self.image_id = json.loads(r.stdout)["config"]["digest"]

    def build_image(self):
        """busybox's rootfs plus seeded noise, one layer (scripts/lib/mkimage.py)."""
        rootfs = os.path.join(self.dir, "rootfs")
        src = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                           "bundles/rootfs/busybox")
        subprocess.run(["cp", "-a", src, rootfs], check=True)
        noise = random.Random(self.soak.seed)
        with open(os.path.join(rootfs, "soak-noise"), "wb") as f:
            f.write(noise.randbytes(NOISE_BYTES))
        archive = os.path.join(self.dir, "app.tar")
        mkimage = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mkimage.py")
        subprocess.run([sys.executable, mkimage, "--rootfs", rootfs, "--name", self.image, "--cmd", '["sh"]',
                        "--output", archive], check=True, stdout=subprocess.DEVNULL)
        shutil.rmtree(rootfs)
        return archive

    def start(self):
        if self.frozen:
            self.thaw()
            return
        if self.proc and self.proc.poll() is None:
            return
        log = open(os.path.join(self.dir, "registry.log"), "a", encoding="utf-8")
        self.proc = subprocess.Popen(["docker-registry", "serve", os.path.join(self.dir, "config.yml")],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        self.soak.daemons["registry"] = self.proc.pid
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit(f"soak: docker-registry exited with {self.proc.returncode}; "
                                     f"see {self.dir}/registry.log")
                time.sleep(0.02)
        raise SystemExit(f"soak: docker-registry did not listen on {self.host} in 20 s")

    def stop(self, sig=signal.SIGKILL):
        """Gone: a refused connection, or one cut in the middle of a blob."""
        if self.frozen:
            self.thaw()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.soak.daemons["registry"] = None

    def freeze(self):
        """Hung: connections are accepted (by the kernel) and never answered."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGSTOP)
            self.frozen = True

    def thaw(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
        self.frozen = False

    def teardown(self):
        self.stop(signal.SIGTERM)


# ---------------------------------------------------------------- the store


def store_leaks(store):
    """What a pull left in the image store: partial images in the index (that
    `image ls` would list as complete), scratch folders, lock and temp files,
    use records with no pod, layers and blobs no image uses."""
    found = []
    try:
        with open(os.path.join(store, "images.json"), encoding="utf-8") as f:
            images = json.load(f).get("images") or []
    except FileNotFoundError:
        images = []
    except ValueError as e:
        return [f"image store index {store}/images.json unreadable: {e}"]
    hexes = lambda d: d.split(":", 1)[-1]  # noqa: E731
    layers, blobs = set(), set()
    for i in images:
        layers.update(hexes(l) for l in i.get("layers") or [])
        blobs.update(hexes(i.get(k, "")) for k in ("id", "manifest_digest"))
        missing = [l for l in i.get("layers") or [] if not os.path.isdir(os.path.join(store, "layers", hexes(l)))]
        missing += [i.get(k, "") for k in ("id", "manifest_digest")
                    if not os.path.isfile(os.path.join(store, "blobs/sha256", hexes(i.get(k, ""))))]
        if missing:
            found.append(f"partial image {i.get('name')} in the index (missing {', '.join(missing)})")

    def entries(rel):
        try:
            return sorted(os.listdir(os.path.join(store, rel)))
        except FileNotFoundError:
            return []
    found += [f"image store temp {store}/tmp/{e}" for e in entries("tmp")]
    found += [f"pull leftover {store}/pulls/{e}" for e in entries("pulls") if e != "locks"]
    # pulls/locks/<digest>.lock are not counted: empty files whose flock says
    # who fetches that digest; one a killed pull held is taken by the next.
    found += [f"use record with no pod {store}/uses/{e}" for e in entries("uses")]
    found += [f"image store temp {store}/{e}" for e in entries(".") if ".tmp" in e]
    found += [f"layer no image uses {store}/layers/{e}" for e in entries("layers") if e not in layers]
    found += [f"blob no image uses {store}/blobs/sha256/{e}" for e in entries("blobs/sha256")
              if e not in blobs]
    return found


def scrub_store(store, peapod, env):
    """Puts the store back after its leaks were counted."""
    for rel in ("tmp", "pulls", "uses"):
        d = os.path.join(store, rel)
        for e in os.listdir(d) if os.path.isdir(d) else []:
            if rel == "pulls" and e == "locks":
                for lock in os.listdir(os.path.join(d, e)):
                    os.unlink(os.path.join(d, e, lock))
                continue
            subprocess.run(["rm", "-rf", "--one-file-system", os.path.join(d, e)], check=False)
    for e in os.listdir(store):
        if ".tmp" in e:
            os.unlink(os.path.join(store, e))
    # What is left of a partial image goes with its name; then what no image uses.
    for line in store_leaks(store):
        if line.startswith("partial image "):
            name = line[len("partial image "):].split(" in the index")[0]
            subprocess.run([peapod, "image", "rm", name], env=env, capture_output=True, check=False)
    for line in store_leaks(store):
        for prefix in ("layer no image uses ", "blob no image uses "):
            if line.startswith(prefix):
                subprocess.run(["rm", "-rf", "--one-file-system", line[len(prefix):]], check=False)


# ---------------------------------------------------------------- lifecycles


def image_of(runner, name="app"):
    """The image id the container was given (its pod folder's images.json)."""
    for d in runner.folders():
        try:
            with open(os.path.join(d, "images.json"), encoding="utf-8") as f:
                return (json.load(f).get(name) or {}).get("id")
        except (OSError, ValueError):
            pass
    return None


class RegistryStop:
    """`registry-stop`: the registry is killed (or hung, SIGSTOP) before the
    pod's pull or while it runs. The pod must say so (ErrImagePull, then
    ImagePullBackOff; ContainerCreating while a hung pull waits), never run
    another image, never end Completed; once the registry is back, it runs
    the registry's image; removed before that, it leaves nothing in the store."""

    def __init__(self, soak, runner):
        self.soak = soak
        self.rng = soak.rng
        self.runner = runner
        self.registry = soak.registry

    def draw(self, hung=True):
        """The fault's shape, all drawn before anything is done (replay).
        `hung`: whether the registry may hang (SIGSTOP) rather than die. Not
        for the static daemon: it waits (up to 30 s) for each pod it starts
        to be ready, which a hung pull delays, and meanwhile handles no file."""
        hows = ["killed before", "killed while pulling"] + (["hung while pulling"] if hung else [])
        self.shape = {
            "policy": self.rng.choice(["Always", "IfNotPresent"]),
            "how": self.rng.choice(hows),
            "delay": self.rng.uniform(0, 0.4),
            "then": self.rng.choice(["registry back", "pod removed"]),
        }
        return self.shape

    def explain(self, e):
        """The mismatch, with the fault's shape."""
        s = self.shape
        return Mismatch(f"[{s['how']} ({s['delay']:.2f}s), {s['policy']}, then {s['then']}] {e}")

    def before(self, shape):
        """Not in the store: the pod must pull whatever its policy."""
        r = self.runner.peapod("image", "rm", self.registry.image)
        if r.returncode != 0 and "not found" not in r.stderr:
            raise Mismatch(f"`image rm {self.registry.image}` failed: {r.stderr.strip()[:300]}")
        if shape["how"] == "killed before":
            self.registry.stop()

    def started(self, shape):
        """The pod was handed over: the registry stops under its pull."""
        if shape["how"] == "killed before":
            return
        time.sleep(shape["delay"])
        if shape["how"] == "hung while pulling":
            self.registry.freeze()
        else:
            self.registry.stop()

    def look(self, shape):
        """The pod tells of the failed pull (or, when the pull won the race,
        runs the right image). Returns whether it pulled before the stop."""
        want = ("ContainerCreating",) + PULL_FAILED if shape["how"] == "hung while pulling" else PULL_FAILED
        deadline = time.monotonic() + 20
        seen = set()
        while True:
            s = self.runner.status()
            c = container(s, "app")
            state = c.get("state") or {}
            if "terminated" in state:
                raise Mismatch(f"an app whose image could not be pulled ended: {state}")
            if "running" in state:
                got = image_of(self.runner)
                expect(got == self.registry.image_id,
                       f"the app runs image {got}, not the registry's {self.registry.image_id}")
                expect(shape["how"] != "killed before", "the app runs although its registry was down")
                return True
            reason = (state.get("waiting") or {}).get("reason")
            if reason:
                seen.add(reason)
            if reason in want and (shape["how"] == "hung while pulling" or reason in PULL_FAILED):
                expect(s.get("phase") == "Pending", f"waiting for its image ({reason}): phase {s.get('phase')}")
                expect(not c.get("restartCount"), f"a pull failure counted as a restart: {c}")
                return False
            if time.monotonic() > deadline:
                raise Mismatch(f"no ErrImagePull/ImagePullBackOff 20 s after the registry stopped "
                               f"(reasons seen: {sorted(seen)}); status: {json.dumps(s)[:500]}")
            time.sleep(0.02)

    def back(self):
        """The registry is back: the pod pulls and runs the registry's image."""
        self.registry.start()
        try:
            s = self.runner.wait("the app running once the registry is back", self.runner.app_running, 45)
        except Mismatch:
            state = container(self.runner.status(), "app").get("state")
            events = ""
            for d in self.runner.folders():
                r = self.runner.peapod("pod", "describe", os.path.basename(d))
                events = " | ".join(r.stdout.strip().splitlines()[-6:])
            raise Mismatch(f"not running 45 s after the registry came back: app {state}; events: {events}") from None
        got = image_of(self.runner)
        expect(got == self.registry.image_id, f"the app runs image {got}, not the registry's {self.registry.image_id}")
        c = container(s["status"], "app")
        expect(c.get("restartCount") == 0, f"restarts while the image was pulled: {c}")


def run_registry_stop(front, name):
    """`registry-stop` through `pod run -d`."""
    fault = RegistryStop(front.soak, front.pods)
    shape = fault.draw()
    fault.before(shape)
    m = front.registry_manifest(name, shape["policy"])
    path = front.soak.write_manifest(m)
    # In the background: `pod run -d` returns once the pull ended, and the
    # registry is to stop under it.
    run = subprocess.Popen([front.soak.peapod, "--root", front.pods.root, "pod", "run", "-d", "-f", path],
                           env={**front.pods.env, **front.network()}, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    try:
        front.pods.wait("the pod's folder", front.pods.folders, 20)
        fault.started(shape)
        pulled = fault.look(shape)
        if shape["then"] == "registry back" or pulled:
            fault.back()
        front.pods.rm(name)
        _, err = run.communicate(timeout=30)
        expect("panicked" not in err, f"`pod run -d` panicked: {err[:400]}")
    except Mismatch as e:
        raise fault.explain(e) from None
    finally:
        fault.registry.start()
        if run.poll() is None:
            run.kill()
            run.wait()


def static_registry_stop(front, name):
    """`registry-stop` through the static daemon: the file goes while the
    registry is down, or stays until the pod runs."""
    fault = RegistryStop(front.soak, front.pods)
    shape = fault.draw(hung=False)
    fault.before(shape)
    m = front.registry_manifest(name, shape["policy"])
    path = None
    try:
        path = front.deliver(name, front.yaml(m))
        front.pods.wait("the static pod's folder", front.pods.folders, 20)
        fault.started(shape)
        pulled = fault.look(shape)
        if shape["then"] == "registry back" or pulled:
            fault.back()
        front.withdraw(path)
        path = None
    except Mismatch as e:
        raise fault.explain(e) from None
    finally:
        fault.registry.start()
        if path and os.path.exists(path):
            os.unlink(path)
