//! The CNI runtime's rules against fake plugins: shell scripts that log what
//! they were given and answer as told, run for real (no root needed).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use super::*;

struct Lab {
    dir: tempfile::TempDir,
    cni: Cni,
}

/// One logged call: command, plugin name, environment, stdin.
#[derive(Debug)]
struct Call {
    command: String,
    plugin: String,
    env: String,
    conf: Value,
}

const RESULT: &str = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"br0"},{"name":"eth0","sandbox":"/run/ns"}],"ips":[{"address":"10.9.0.5/24","gateway":"10.9.0.1","interface":1}]}"#;

impl Lab {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["net.d", "bin", "bin2", "cache"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let settings = NetworkSettings {
            cni_conf_dir: dir.path().join("net.d"),
            cni_bin_dirs: vec![dir.path().join("bin"), dir.path().join("bin2")],
            cni_cache_dir: dir.path().join("cache"),
            cni_timeout: Duration::from_secs(20),
            ..Default::default()
        };
        let cni = Cni::new(&settings);
        Self { dir, cni }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("calls.log")
    }

    /// A plugin that logs each call and answers ADD with `result` (or fails
    /// with `fail` on the command named there), VERSION with `versions`.
    fn plugin(&self, name: &str, result: &str, fail: Option<(&str, &str)>, versions: &str) {
        let (fail_command, fail_answer) = fail.unwrap_or(("NONE", ""));
        let body = format!(
            r#"#!/bin/sh
input=$(cat)
printf '%s\t%s\t%s\t%s\n' "$CNI_COMMAND" "{name}" "$CNI_CONTAINERID|$CNI_NETNS|$CNI_IFNAME|$CNI_ARGS|$CNI_PATH" "$input" >> {log}
if [ "$CNI_COMMAND" = "{fail_command}" ]; then printf '%s' '{fail_answer}'; exit 1; fi
case "$CNI_COMMAND" in
  ADD) printf '%s' '{result}' ;;
  VERSION) printf '{{"cniVersion":"1.0.0","supportedVersions":{versions}}}' ;;
esac
"#,
            log = self.log().display()
        );
        let path = self.dir.path().join("bin").join(name);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn simple(&self, name: &str) {
        self.plugin(name, RESULT, None, r#"["0.3.1","0.4.0","1.0.0"]"#);
    }

    fn conflist(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("net.d/10-test.conflist");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn calls(&self) -> Vec<Call> {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let calls = text
            .lines()
            .map(|line| {
                let mut parts = line.splitn(4, '\t');
                let mut next = || parts.next().unwrap().to_string();
                let (command, plugin, env, conf) = (next(), next(), next(), next());
                Call {
                    command,
                    plugin,
                    env,
                    conf: serde_json::from_str(&conf).unwrap(),
                }
            })
            .collect();
        let _ = std::fs::remove_file(self.log());
        calls
    }

    fn request(&self) -> AttachRequest {
        let mut request = AttachRequest::new(
            "sandbox1",
            Path::new("/run/peapod/netns/pod1"),
            PodRef {
                namespace: "default".into(),
                name: "web".into(),
                uid: "uid-1".into(),
            },
        );
        request.port_mappings = vec![PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: Protocol::Tcp,
            host_ip: None,
        }];
        request
    }

    fn cached(&self) -> Option<cache::Record> {
        self.cni.cache.read("sandbox1", "eth0").unwrap()
    }
}

/// (command, plugin) of each call.
fn summary(calls: &[Call]) -> Vec<(&str, &str)> {
    calls
        .iter()
        .map(|c| (c.command.as_str(), c.plugin.as_str()))
        .collect()
}

fn chain() -> &'static str {
    r#"{"cniVersion": "1.0.0", "name": "testnet", "plugins": [
        {"type": "first", "keep": "me", "capabilities": {"portMappings": false}},
        {"type": "second", "capabilities": {"portMappings": true, "bandwidth": true}}]}"#
}

/// Spec section 3 (adding an attachment) and libcni's buildOneConfig: the name
/// and version injected, prevResult from the previous plugin (none for the
/// first), runtimeConfig only with the capabilities a plugin declares true.
#[test]
fn add_chains_plugins_with_prev_result_and_runtime_config() {
    let lab = Lab::new();
    lab.simple("first");
    lab.plugin(
        "second",
        &RESULT.replace("10.9.0.5", "10.9.0.6"),
        None,
        "[]",
    );
    lab.conflist(chain());
    let attachment = lab.cni.add(&lab.request()).unwrap();
    assert_eq!(attachment.network, "testnet");
    assert_eq!(attachment.cni_version, "1.0.0");
    assert_eq!(
        attachment.pod_ips(),
        ["10.9.0.6".parse::<IpAddr>().unwrap()]
    );
    let calls = lab.calls();
    assert_eq!(summary(&calls), [("ADD", "first"), ("ADD", "second")]);
    let bin = format!(
        "{}:{}",
        lab.dir.path().join("bin").display(),
        lab.dir.path().join("bin2").display()
    );
    assert_eq!(
        calls[0].env,
        format!("sandbox1|/run/peapod/netns/pod1|eth0|IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=sandbox1;K8S_POD_UID=uid-1|{bin}")
    );
    let (first, second) = (&calls[0].conf, &calls[1].conf);
    assert_eq!(first["name"], "testnet");
    assert_eq!(first["cniVersion"], "1.0.0");
    assert_eq!(first["keep"], "me");
    assert!(first.get("prevResult").is_none() && first.get("runtimeConfig").is_none());
    assert_eq!(
        second["prevResult"],
        serde_json::from_str::<Value>(RESULT).unwrap()
    );
    assert_eq!(
        second["runtimeConfig"],
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]})
    );
    let record = lab.cached().unwrap();
    assert_eq!(record.result.unwrap()["ips"][0]["address"], "10.9.0.6/24");
    assert!(record.config_file.ends_with("10-test.conflist"));
    // The cache answers for an adopted pod.
    let again = lab.cni.attachment("sandbox1", "eth0").unwrap().unwrap();
    assert_eq!(again, attachment);
}

/// Spec section 3 (deleting an attachment): reverse order, each plugin given
/// the ADD's final result; DEL of something already gone succeeds.
#[test]
fn del_runs_in_reverse_with_the_cached_result_and_twice_is_fine() {
    let lab = Lab::new();
    lab.simple("first");
    lab.simple("second");
    lab.conflist(chain());
    lab.cni.add(&lab.request()).unwrap();
    lab.calls();
    lab.cni.del("sandbox1", "eth0").unwrap();
    let calls = lab.calls();
    assert_eq!(summary(&calls), [("DEL", "second"), ("DEL", "first")]);
    let result: Value = serde_json::from_str(RESULT).unwrap();
    assert!(calls.iter().all(|c| c.conf["prevResult"] == result));
    assert_eq!(
        calls[0].conf["runtimeConfig"]["portMappings"][0]["hostPort"],
        8080
    );
    assert!(calls[0].env.contains("K8S_POD_UID=uid-1"));
    assert!(lab.cached().is_none());
    lab.cni.del("sandbox1", "eth0").unwrap();
    assert!(lab.calls().is_empty());
    assert!(lab.cni.attachment("sandbox1", "eth0").unwrap().is_none());
}

/// The network config should not change between ADD and DEL (spec); when it
/// does, DEL still runs the plugins the ADD ran, from the cache (ocicni).
#[test]
fn del_and_check_use_the_network_as_it_was_added() {
    let lab = Lab::new();
    lab.simple("first");
    lab.simple("second");
    lab.simple("third");
    let file = lab.conflist(chain());
    lab.cni.add(&lab.request()).unwrap();
    std::fs::write(
        &file,
        r#"{"cniVersion": "1.0.0", "name": "other", "plugins": [{"type": "third"}]}"#,
    )
    .unwrap();
    lab.calls();
    lab.cni.check("sandbox1", "eth0").unwrap();
    lab.cni.del("sandbox1", "eth0").unwrap();
    let calls = lab.calls();
    assert_eq!(
        summary(&calls),
        [
            ("CHECK", "first"),
            ("CHECK", "second"),
            ("DEL", "second"),
            ("DEL", "first")
        ]
    );
    assert!(calls.iter().all(|c| c.conf["name"] == "testnet"));
}

/// Spec section 2 (CHECK): in order, with the ADD's result; not after DEL;
/// `disableCheck` and configs before 0.4.0 skip it.
#[test]
fn check_follows_the_spec() {
    let lab = Lab::new();
    lab.simple("first");
    lab.simple("second");
    lab.conflist(chain());
    let err = lab.cni.check("sandbox1", "eth0").unwrap_err();
    assert!(matches!(err, CniError::NotAttached { .. }), "{err}");
    lab.cni.add(&lab.request()).unwrap();
    lab.calls();
    lab.cni.check("sandbox1", "eth0").unwrap();
    let calls = lab.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        calls[0].conf["prevResult"],
        serde_json::from_str::<Value>(RESULT).unwrap()
    );
    lab.cni.del("sandbox1", "eth0").unwrap();
    for conf in [
        r#"{"cniVersion": "1.0.0", "name": "n", "disableCheck": true, "plugins": [{"type": "first"}]}"#,
        r#"{"cniVersion": "0.3.1", "name": "n", "plugins": [{"type": "first"}]}"#,
    ] {
        lab.conflist(conf);
        lab.cni.add(&lab.request()).unwrap();
        lab.calls();
        lab.cni.check("sandbox1", "eth0").unwrap();
        assert!(lab.calls().is_empty(), "{conf}");
        lab.cni.del("sandbox1", "eth0").unwrap();
        // 0.3.x DEL gets no prevResult (it came with 0.4.0).
        let calls = lab.calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(
            calls[0].conf.get("prevResult").is_none(),
            conf.contains("0.3.1"),
            "{conf}"
        );
    }
}

/// A failed ADD is followed by a DEL of the whole list (spec: "a delete must
/// still be executed even if the add fails"), and leaves no cache; the error
/// names the file, the plugin and the plugin's own message.
#[test]
fn a_failed_add_is_undone_and_named() {
    let lab = Lab::new();
    lab.simple("first");
    lab.plugin(
        "second",
        RESULT,
        Some((
            "ADD",
            r#"{"cniVersion":"1.0.0","code":7,"msg":"Invalid Configuration","details":"no room"}"#,
        )),
        "[]",
    );
    let file = lab.conflist(chain());
    let err = lab.cni.add(&lab.request()).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}: plugin second failed (ADD): error 7: Invalid Configuration (no room)",
            file.display()
        )
    );
    let calls = lab.calls();
    assert_eq!(
        summary(&calls),
        [
            ("ADD", "first"),
            ("ADD", "second"),
            ("DEL", "second"),
            ("DEL", "first")
        ]
    );
    assert_eq!(
        calls[2].conf["prevResult"],
        serde_json::from_str::<Value>(RESULT).unwrap()
    );
    assert!(lab.cached().is_none());
    // The undo failing too: both are told, and the record stays for a later DEL.
    lab.plugin(
        "first",
        RESULT,
        Some(("DEL", r#"{"code":5,"msg":"stuck"}"#)),
        "[]",
    );
    let err = lab.cni.add(&lab.request()).unwrap_err().to_string();
    assert!(
        err.contains("Invalid Configuration")
            && err.contains("undoing the ADD failed too")
            && err.contains("stuck"),
        "{err}"
    );
    let record = lab.cached().unwrap();
    assert!(!record.finished && record.result.is_some());
    assert!(lab.cni.attachment("sandbox1", "eth0").unwrap().is_none());
    let err = lab.cni.check("sandbox1", "eth0").unwrap_err().to_string();
    assert!(err.ends_with("its ADD never finished"), "{err}");
    // Once the plugin can DEL again, DEL finishes the job.
    lab.simple("first");
    lab.cni.del("sandbox1", "eth0").unwrap();
    assert!(lab.cached().is_none());
}

#[test]
fn a_missing_plugin_fails_before_anything_runs() {
    let lab = Lab::new();
    lab.simple("first");
    let file = lab.conflist(chain());
    let err = lab.cni.add(&lab.request()).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}: plugin \"second\" not found in {}, {}",
            file.display(),
            lab.dir.path().join("bin").display(),
            lab.dir.path().join("bin2").display()
        )
    );
    assert!(lab.calls().is_empty());
    assert!(lab.cached().is_none());
}

#[test]
fn plugins_are_found_in_folder_order() {
    let lab = Lab::new();
    lab.simple("first");
    let second = lab.dir.path().join("bin2/first");
    std::fs::copy(lab.dir.path().join("bin/first"), &second).unwrap();
    assert_eq!(
        lab.cni.find_plugin("first").unwrap(),
        lab.dir.path().join("bin/first")
    );
    std::fs::remove_file(lab.dir.path().join("bin/first")).unwrap();
    assert_eq!(lab.cni.find_plugin("first").unwrap(), second);
    assert!(lab.cni.find_plugin("bin").is_none());
}

#[test]
fn a_hanging_plugin_is_killed_and_undone() {
    let mut lab = Lab::new();
    lab.cni.timeout = Duration::from_millis(500);
    lab.simple("first");
    let path = lab.dir.path().join("bin/second");
    std::fs::write(
        &path,
        "#!/bin/sh\n[ \"$CNI_COMMAND\" = ADD ] && exec sleep 30\nexit 0\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    lab.conflist(chain());
    let err = lab.cni.add(&lab.request()).unwrap_err().to_string();
    assert!(
        err.contains("plugin second failed (ADD): killed after 500ms"),
        "{err}"
    );
    assert!(lab.cached().is_none());
    let calls = lab.calls();
    assert_eq!(
        calls
            .last()
            .map(|c| (c.command.as_str(), c.plugin.as_str())),
        Some(("DEL", "first"))
    );
}

#[test]
fn bad_answers_are_refused_and_undone() {
    let lab = Lab::new();
    lab.conflist(r#"{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "first"}]}"#);
    for (answer, want) in [
        ("", "answered nothing"),
        ("[1]", "answered something other than a result object"),
        ("{x", "answered invalid JSON"),
        (
            r#"{"ips":[{"address":"nonsense"}]}"#,
            "answered a malformed result: ips[0].address",
        ),
    ] {
        lab.plugin("first", answer, None, "[]");
        let err = lab.cni.add(&lab.request()).unwrap_err().to_string();
        assert!(
            err.contains("plugin first (ADD) ") && err.contains(want),
            "{answer}: {err}"
        );
        assert!(lab.cached().is_none(), "{answer}");
        let calls = lab.calls();
        assert_eq!(calls.last().unwrap().command, "DEL", "{answer}");
    }
}

#[test]
fn a_second_add_without_del_is_refused() {
    let lab = Lab::new();
    lab.simple("first");
    lab.conflist(r#"{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "first"}]}"#);
    lab.cni.add(&lab.request()).unwrap();
    let err = lab.cni.add(&lab.request()).unwrap_err().to_string();
    assert_eq!(
        err,
        "sandbox1 eth0: already attached to network n (DEL it first)"
    );
    let mut other = lab.request();
    other.ifname = "net1".into();
    lab.cni.add(&other).unwrap();
}

#[test]
fn bad_requests_name_the_field() {
    let lab = Lab::new();
    type Change = fn(&mut AttachRequest);
    let cases: [(Change, &str); 5] = [
        (
            |r| r.container_id = "-x".into(),
            "container id: \"-x\": must start with a letter or digit",
        ),
        (
            |r| r.ifname = "averyveryverylongname".into(),
            "interface name: \"averyveryverylongname\": must be at most 15 bytes",
        ),
        (
            |r| r.ifname = "eth:0".into(),
            "interface name: \"eth:0\": must not hold",
        ),
        (
            |r| r.netns = "netns/x".into(),
            "netns: \"netns/x\": must be an absolute path",
        ),
        (
            |r| r.pod.uid = "a;b".into(),
            "K8S_POD_UID: \"a;b\": must not hold ';'",
        ),
    ];
    for (change, want) in cases {
        let mut request = lab.request();
        change(&mut request);
        let err = lab.cni.add(&request).unwrap_err().to_string();
        assert!(err.starts_with(want), "{err}");
    }
}

/// Spec section 1 (version considerations): the highest version of
/// cniVersion/cniVersions; runtimes may consider the plugins' VERSION.
#[test]
fn versions_are_negotiated_with_the_plugins() {
    let lab = Lab::new();
    lab.plugin(
        "first",
        RESULT,
        None,
        r#"["0.3.1","0.4.0","1.0.0","1.1.0"]"#,
    );
    lab.plugin("second", RESULT, None, r#"["0.4.0","1.0.0"]"#);
    lab.conflist(
        r#"{"cniVersion": "0.4.0", "cniVersions": ["1.1.0", "1.0.0"], "name": "n",
            "plugins": [{"type": "first"}, {"type": "second"}, {"type": "first"}]}"#,
    );
    let attachment = lab.cni.add(&lab.request()).unwrap();
    assert_eq!(attachment.cni_version, "1.0.0");
    let calls = lab.calls();
    let summary: Vec<_> = calls
        .iter()
        .map(|c| (c.command.as_str(), c.plugin.as_str()))
        .collect();
    // Each plugin binary is asked once.
    assert_eq!(
        summary,
        [
            ("VERSION", "first"),
            ("VERSION", "second"),
            ("ADD", "first"),
            ("ADD", "second"),
            ("ADD", "first")
        ]
    );
    assert_eq!(calls[0].conf, json!({"cniVersion": "1.1.0"}));
    assert!(calls[2..].iter().all(|c| c.conf["cniVersion"] == "1.0.0"));
    lab.cni.del("sandbox1", "eth0").unwrap();
    lab.plugin("second", RESULT, None, r#"["0.3.1"]"#);
    let err = lab.cni.add(&lab.request()).unwrap_err().to_string();
    assert!(
        err.ends_with("no CNI version in common: the config allows 1.1.0, 1.0.0, 0.4.0, plugin second supports 0.3.1"),
        "{err}"
    );
}

/// Spec section 3 (GC): stale cached attachments are deleted, valid ones
/// kept; a 1.1 network's plugins get GC with the valid attachments.
#[test]
fn gc_deletes_stale_attachments_and_tells_11_plugins() {
    let lab = Lab::new();
    lab.plugin("first", RESULT, None, r#"["1.0.0","1.1.0"]"#);
    lab.conflist(r#"{"cniVersion": "1.1.0", "name": "n", "plugins": [{"type": "first"}]}"#);
    let mut keep = lab.request();
    keep.container_id = "keep".into();
    lab.cni.add(&keep).unwrap();
    lab.cni.add(&lab.request()).unwrap();
    lab.calls();
    lab.cni.gc(&[("keep", "eth0")]).unwrap();
    let calls = lab.calls();
    let summary: Vec<_> = calls
        .iter()
        .map(|c| (c.command.as_str(), c.env.split('|').next().unwrap()))
        .collect();
    assert_eq!(summary, [("DEL", "sandbox1"), ("GC", "")]);
    assert_eq!(
        calls[1].conf["cni.dev/valid-attachments"],
        json!([{"containerID": "keep", "ifname": "eth0"}])
    );
    assert!(lab.cached().is_none());
    assert!(lab.cni.attachment("keep", "eth0").unwrap().is_some());
    // STATUS, also 1.1.
    lab.cni.status().unwrap();
    assert_eq!(lab.calls()[0].command, "STATUS");
}

#[test]
fn no_config_is_its_own_error() {
    let lab = Lab::new();
    let err = lab.cni.add(&lab.request()).unwrap_err();
    assert!(matches!(err, CniError::NoConfig { .. }), "{err}");
    // GC with nothing cached and no config has nothing to do.
    lab.cni.gc(&[]).unwrap();
}
