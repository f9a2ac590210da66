//! Pods whose images come from a registry (issue 13): the loopback registry
//! of `registry.rs`, images named `127.0.0.1:PORT/...`, reached over plain
//! HTTP as an insecure registry. Nothing leaves loopback.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::pod::PodEnv;
use crate::registry::{busybox_archive, Options, Registry};

/// `peapod` with the pod test settings, pulling from `registry` only.
fn cmd(env: &PodEnv, registry: &Registry, args: &[&str]) -> Command {
    // An empty credentials file: never the host's docker or kubelet config.
    let credentials = env.work.path().join("no-credentials.json");
    if !credentials.exists() {
        std::fs::write(&credentials, "{\"auths\": {}}").unwrap();
    }
    let mut cmd = env.cmd(args);
    cmd.env("PEAPOD_INSECURE_REGISTRIES", registry.host())
        .env("PEAPOD_REGISTRY_HOSTS_DIR", env.work.path().join("certs.d"))
        .env("PEAPOD_REGISTRY_CA_DIR", env.work.path().join("certs.d"))
        .env("PEAPOD_REGISTRY_CREDENTIALS", &credentials);
    cmd
}

fn ok(env: &PodEnv, registry: &Registry, args: &[&str]) -> String {
    let out = output_of(&mut cmd(env, registry, args));
    assert!(
        out.status.success(),
        "peapod {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn pod_yaml(name: &str, image: &str, policy: Option<&str>) -> String {
    let policy = policy
        .map(|p| format!("\n    imagePullPolicy: {p}"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{ name: {name} }}\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: app\n    image: {image}{policy}\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 3600 & wait\"]\n"
    )
}

fn run_detached(env: &PodEnv, registry: &Registry, name: &str, yaml: &str) {
    let path = env.manifest(name, yaml);
    ok(
        env,
        registry,
        &["pod", "run", "-d", "-f", path.to_str().unwrap()],
    );
}

fn app_state(env: &PodEnv, name: &str) -> Value {
    PodEnv::container(&env.inspect(name), "app")["state"].clone()
}

fn waiting_reason(env: &PodEnv, name: &str) -> String {
    app_state(env, name)["waiting"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn describe(env: &PodEnv, name: &str) -> String {
    env.ok(&["pod", "describe", name])
}

#[test]
fn pods_pull_their_images_by_policy() {
    let registry = Registry::start(Options::default());
    let archive = format!("oci-archive:{}", busybox_archive().display());
    registry.push(&archive, "x/busybox:v1", &[]);
    registry.push(&archive, "x/busybox:latest", &[]);
    let host = registry.host();
    let env = PodEnv::new();

    // Only in the registry: pulled, then the pod runs; the events say so.
    let v1 = format!("{host}/x/busybox:v1");
    run_detached(&env, &registry, "first", &pod_yaml("first", &v1, None));
    env.wait_phase("first", "Running", false);
    let events = describe(&env, "first");
    assert!(
        events.contains(&format!("Pulling image \"{v1}\"")),
        "{events}"
    );
    assert!(
        events.contains(&format!("Successfully pulled image \"{v1}\" in "))
            && events.contains("Image size: "),
        "{events}"
    );
    let stored = ok(&env, &registry, &["image", "ls"]);
    assert!(stored.contains(&format!("{host}/x/busybox")), "{stored}");

    // IfNotPresent (a tag's default) with the image here: no pull.
    run_detached(&env, &registry, "second", &pod_yaml("second", &v1, None));
    env.wait_phase("second", "Running", false);
    let events = describe(&env, "second");
    assert!(
        events.contains(&format!(
            "Container image \"{v1}\" already present on machine"
        )),
        "{events}"
    );
    assert!(!events.contains("Pulling image"), "{events}");

    // `:latest` defaults to Always: pulled for each pod, though present.
    let latest = format!("{host}/x/busybox:latest");
    for name in ["always1", "always2"] {
        run_detached(&env, &registry, name, &pod_yaml(name, &latest, None));
        env.wait_phase(name, "Running", false);
        let events = describe(&env, name);
        assert!(
            events.contains(&format!("Successfully pulled image \"{latest}\"")),
            "{name}: {events}"
        );
    }

    // Never, and the image is not here: ErrImageNeverPull, nothing pulled.
    let absent = format!("{host}/x/busybox:absent");
    run_detached(
        &env,
        &registry,
        "never",
        &pod_yaml("never", &absent, Some("Never")),
    );
    wait_until("ErrImageNeverPull", Duration::from_secs(20), || {
        waiting_reason(&env, "never") == "ErrImageNeverPull"
    });
    let events = describe(&env, "never");
    assert!(
        events.contains(&format!(
            "Container image \"{absent}\" is not present with pull policy of Never"
        )),
        "{events}"
    );
    assert!(!events.contains("Pulling image"), "{events}");

    // A name that does not parse: InvalidImageName.
    run_detached(
        &env,
        &registry,
        "invalid",
        &pod_yaml("invalid", &format!("{host}/X/Busybox:v1"), None),
    );
    wait_until("InvalidImageName", Duration::from_secs(20), || {
        waiting_reason(&env, "invalid") == "InvalidImageName"
    });
    env.finish();
}

#[test]
fn a_registry_down_gives_err_image_pull_then_back_off_then_the_pod_runs() {
    let mut registry = Registry::start(Options::default());
    let archive = format!("oci-archive:{}", busybox_archive().display());
    registry.push(&archive, "x/busybox:v2", &[]);
    registry.stop();
    let env = PodEnv::new();
    let image = format!("{}/x/busybox:v2", registry.host());
    run_detached(&env, &registry, "down", &pod_yaml("down", &image, None));

    // The pull fails: ErrImagePull, then ImagePullBackOff, each retried.
    let mut seen = Vec::new();
    wait_until(
        "ErrImagePull then ImagePullBackOff",
        Duration::from_secs(30),
        || {
            let reason = waiting_reason(&env, "down");
            if !reason.is_empty() && seen.last() != Some(&reason) {
                seen.push(reason);
            }
            seen.windows(2)
                .any(|w| w[0] == "ErrImagePull" && w[1] == "ImagePullBackOff")
        },
    );
    let events = describe(&env, "down");
    for wanted in [
        format!("Failed to pull image \"{image}\""),
        "Error: ErrImagePull".to_string(),
        format!("Back-off pulling image \"{image}\""),
    ] {
        assert!(events.contains(&wanted), "{wanted:?} not in {events}");
    }
    assert_eq!(env.inspect("down")["status"]["phase"], "Pending");

    // The registry is back: a later attempt pulls, and the pod runs.
    registry.restart();
    env.wait_phase("down", "Running", false);
    let events = describe(&env, "down");
    assert!(
        events.contains(&format!("Successfully pulled image \"{image}\"")),
        "{events}"
    );
    env.finish();
}

#[test]
fn image_gc_removes_unused_images_only() {
    let registry = Registry::start(Options::default());
    let archive = format!("oci-archive:{}", busybox_archive().display());
    registry.push(&archive, "x/used:v1", &[]);
    let env = PodEnv::new();
    // Another image (its own config, so its own id), pushed zstd-compressed.
    let rootfs = env.work.path().join("unused-rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::write(rootfs.join("unused"), "not used by any pod\n").unwrap();
    let other = env.work.path().join("unused.tar");
    let made = Command::new("python3")
        .arg(repo().join("scripts/lib/mkimage.py"))
        .arg("--rootfs")
        .arg(&rootfs)
        .args(["--name", "localhost/unused:v1", "--cmd", "[\"/unused\"]"])
        .arg("--output")
        .arg(&other)
        .status()
        .unwrap();
    assert!(made.success(), "mkimage.py");
    registry.push(
        &format!("oci-archive:{}", other.display()),
        "x/unused:v1",
        &["--dest-compress-format", "zstd"],
    );
    let host = registry.host();
    let used = format!("{host}/x/used:v1");
    let unused = format!("{host}/x/unused:v1");
    ok(&env, &registry, &["image", "pull", &unused]);
    run_detached(&env, &registry, "user", &pod_yaml("user", &used, None));
    env.wait_phase("user", "Running", false);
    // The pod stops: its image is still the pod's (it is not removed).
    env.ok(&["pod", "stop", "user"]);
    // A threshold every disk is over: collect everything that may go.
    let out = ok(
        &env,
        &registry,
        &[
            "image",
            "gc",
            "--high-threshold",
            "1",
            "--low-threshold",
            "0",
            "--minimum-age",
            "0s",
        ],
    );
    assert!(out.contains(&format!("removed {unused}")), "{out}");
    let listed = ok(&env, &registry, &["image", "ls"]);
    assert!(listed.contains(&format!("{host}/x/used")), "{listed}");
    assert!(!listed.contains(&format!("{host}/x/unused")), "{listed}");
    assert!(listed.contains("localhost/pause"), "{listed}");
    env.finish();
}
