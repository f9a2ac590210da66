//! Pods on the network for real, with Debian's CNI plugins (/usr/lib/cni).
//!
//! Pods with a network of their own run in a "node": a network namespace the
//! test makes and runs every peapod command in (so the supervisors, the CNI
//! plugins, the bridge, portmap's iptables rules and ip_forward are all the
//! node's, never the host's), linked by a veth pair to a "client" namespace
//! that plays a machine on the node's network. Host namespaces
//! (hostNetwork, hostPID, hostIPC) are shown on the real host, where such a
//! pod adds nothing to the host's network. Traffic only ever goes between
//! these namespaces or to the host's 127.0.0.1.

use std::fs::File;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use peapod::net::netns;
use serde_json::Value;

use crate::common::*;
use crate::pod::PodEnv;

const PLUGINS: &str = "/usr/lib/cni";
/// The node's address on its link to the client (and so its hostIP).
const NODE_IP: &str = "10.225.0.1";
const CLIENT_IP: &str = "10.225.0.2";
/// contrib/cni/10-peapod.conflist's pod range.
const POD_NET: &str = "10.86.0.";

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn busybox(args: &[&str]) -> Command {
    let mut cmd = Command::new(busybox_rootfs().join("bin/busybox"));
    cmd.args(args);
    cmd
}

/// One test's node: its namespace, the client's, its CNI folders and pods.
struct NetLab {
    /// Taken by `finish`.
    pods: Option<PodEnv>,
    dir: tempfile::TempDir,
    node: PathBuf,
    client: PathBuf,
    servers: Vec<Child>,
}

impl NetLab {
    fn new() -> Self {
        let pods = PodEnv::new();
        assert!(
            Path::new(PLUGINS).join("bridge").is_file(),
            "{PLUGINS}/bridge is missing: install containernetworking-plugins"
        );
        let dir = tempfile::Builder::new()
            .prefix("peapod-podnet-")
            .tempdir()
            .unwrap();
        std::fs::create_dir(dir.path().join("net.d")).unwrap();
        std::fs::write(
            dir.path().join("resolv.conf"),
            "nameserver 192.0.2.53\nsearch corp.example\n",
        )
        .unwrap();
        let pins = dir.path().join("ns");
        let node = netns::create(&pins, "node").unwrap();
        let client = netns::create(&pins, "client").unwrap();
        let lab = NetLab {
            pods: Some(pods),
            dir,
            node,
            client,
            servers: Vec::new(),
        };
        let client_ns = lab.client.to_str().unwrap().to_string();
        for args in [
            vec![
                "link", "add", "c0", "type", "veth", "peer", "name", "n0", "netns", &client_ns,
            ],
            vec!["addr", "add", "10.225.0.1/30", "dev", "c0"],
            vec!["link", "set", "c0", "up"],
            vec!["route", "add", "default", "via", CLIENT_IP],
        ] {
            lab.in_node_ok("ip", &args);
        }
        for args in [
            vec!["addr", "add", "10.225.0.2/30", "dev", "n0"],
            vec!["link", "set", "n0", "up"],
        ] {
            let out = output_of(in_netns(&lab.client, Command::new("ip").args(&args)));
            assert!(out.status.success(), "ip {args:?}: {}", text(&out));
        }
        lab
    }

    fn pods(&self) -> &PodEnv {
        self.pods.as_ref().unwrap()
    }

    /// contrib/cni's example network (its dataDir in the test's folder), plus
    /// `more` plugins.
    fn example_network(&self, more: &[Value]) -> PathBuf {
        let example = repo().join("contrib/cni/10-peapod.conflist");
        let mut conf: Value = serde_json::from_slice(&std::fs::read(example).unwrap()).unwrap();
        conf["plugins"][0]["ipam"]["dataDir"] = self.ipam_dir().to_str().unwrap().into();
        let plugins = conf["plugins"].as_array_mut().unwrap();
        plugins.extend(more.iter().cloned());
        self.write_conflist(&serde_json::to_vec_pretty(&conf).unwrap())
    }

    fn write_conflist(&self, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join("net.d/10-peapod.conflist");
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// peapod in the node, with this test's CNI folders and node DNS.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.pods().cmd(args);
        cmd.env("PEAPOD_CNI_CONF_DIR", self.dir.path().join("net.d"))
            .env("PEAPOD_CNI_CACHE_DIR", self.cache_dir())
            .env("PEAPOD_CNI_BIN_DIRS", PLUGINS)
            .env("PEAPOD_RESOLV_CONF", self.dir.path().join("resolv.conf"));
        in_netns(&self.node, &mut cmd);
        cmd
    }

    fn peapod(&self, args: &[&str]) -> Output {
        output_of(&mut self.cmd(args))
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.peapod(args);
        assert!(
            out.status.success(),
            "peapod {args:?} failed: {}",
            text(&out)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `pod run -d` of `yaml`; its output (stdout and stderr).
    fn run(&self, name: &str, yaml: &str) -> String {
        let path = self.pods().manifest(name, yaml);
        let out = self.peapod(&["pod", "run", "-d", "-f", path.to_str().unwrap()]);
        assert!(out.status.success(), "pod run {name}: {}", text(&out));
        text(&out)
    }

    fn inspect(&self, name: &str) -> Value {
        serde_json::from_str(&self.ok(&["pod", "inspect", name, "-o", "json"])).unwrap()
    }

    /// Waits until the pod's app containers all run; returns its inspect.
    fn wait_running(&self, name: &str) -> Value {
        let mut last = Value::Null;
        wait_until(
            &format!("pod {name} running"),
            Duration::from_secs(30),
            || {
                last = self.inspect(name);
                let apps = last["status"]["containerStatuses"].as_array().cloned();
                last["status"]["phase"] == "Running"
                    && apps.is_some_and(|a| a.iter().all(|c| c["state"]["running"].is_object()))
            },
        );
        last
    }

    fn exec(&self, pod: &str, args: &[&str]) -> Output {
        let mut all = vec!["pod", "exec", pod, "--"];
        all.extend_from_slice(args);
        self.peapod(&all)
    }

    fn exec_ok(&self, pod: &str, args: &[&str]) -> String {
        let out = self.exec(pod, args);
        assert!(
            out.status.success(),
            "exec {args:?} in {pod}: {}",
            text(&out)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn in_node(&self, program: &str, args: &[&str]) -> Output {
        output_of(in_netns(&self.node, Command::new(program).args(args)))
    }

    fn in_node_ok(&self, program: &str, args: &[&str]) -> String {
        let out = self.in_node(program, args);
        assert!(out.status.success(), "{program} {args:?}: {}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    /// GET / of `ip:port` with busybox nc, from the namespace `ns`.
    fn http_get(&self, ns: &Path, ip: &str, port: u16) -> String {
        let request = self.dir.path().join("request");
        std::fs::write(&request, "GET / HTTP/1.0\r\n\r\n").unwrap();
        let mut nc = busybox(&["nc", "-w", "2", ip, &port.to_string()]);
        nc.stdin(File::open(&request).unwrap());
        text(&output_of(in_netns(ns, &mut nc)))
    }

    /// host-local's leases: files named by address.
    fn leases(&self) -> Vec<String> {
        let mut leases = Vec::new();
        for network in std::fs::read_dir(self.ipam_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            for lease in std::fs::read_dir(network.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = lease.file_name().to_string_lossy().into_owned();
                if name.parse::<IpAddr>().is_ok() {
                    leases.push(name);
                }
            }
        }
        leases
    }

    /// The node's interfaces other than lo, its link and the bridge.
    fn pod_links(&self) -> Vec<String> {
        let out = self.in_node_ok("ip", &["-o", "link", "show"]);
        out.lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|name| name.split('@').next().unwrap_or(name).to_string())
            .filter(|name| !["lo", "c0", "peapod0"].contains(&name.as_str()))
            .collect()
    }

    /// Nothing of any pod's network is left: no veth, pinned namespace, IPAM
    /// lease, cached CNI result, nor portmap rule for one of `uids`.
    fn assert_no_pod_network(&self, uids: &[&str]) {
        assert_eq!(self.pod_links(), Vec::<String>::new(), "veths left");
        let pins = entries(&self.pods().root.path().join("netns"));
        assert!(pins.is_empty(), "network namespaces left: {pins:?}");
        assert_eq!(self.leases(), Vec::<String>::new(), "IPAM leases left");
        let results = entries(&self.cache_dir().join("results"));
        assert!(results.is_empty(), "cached CNI results left: {results:?}");
        let rules = self.in_node_ok("iptables-save", &[]);
        let nft = self.in_node_ok("nft", &["list", "ruleset"]);
        for uid in uids {
            assert!(
                !rules.contains(uid),
                "iptables rules left for {uid}: {rules}"
            );
            assert!(!nft.contains(uid), "nftables rules left for {uid}: {nft}");
        }
        assert!(
            !rules.contains("-A CNI-DN-"),
            "portmap DNAT rules left: {rules}"
        );
    }

    /// Removes every pod (from the node), checks nothing of their network is
    /// left, then what PodEnv checks.
    fn finish(mut self, uids: &[&str]) {
        self.remove_pods();
        self.assert_no_pod_network(uids);
        self.pods.take().unwrap().finish();
    }

    fn remove_pods(&self) {
        let listed = self.ok(&["pod", "ps"]);
        for line in listed.lines().skip(1) {
            let name = line.split_whitespace().next().unwrap();
            self.ok(&["pod", "rm", "--force", name]);
        }
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        for child in &mut self.servers {
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.pods.is_some() {
            // After a failure: the pods' DEL must run in the node too.
            if let Ok(out) = self.cmd(&["pod", "ps"]).stderr(Stdio::null()).output() {
                for line in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
                    if let Some(name) = line.split_whitespace().next() {
                        let _ = self
                            .cmd(&["pod", "rm", "--force", name])
                            .stderr(Stdio::null())
                            .status();
                    }
                }
            }
        }
        // The node's bridge, veths and rules go with its namespace.
        let _ = netns::remove(&self.client);
        let _ = netns::remove(&self.node);
    }
}

/// The names in a folder (none if it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn uid_of(status: &Value) -> String {
    status["metadata"]["uid"].as_str().unwrap().to_string()
}

fn pod_ip(status: &Value) -> String {
    status["status"]["podIP"]
        .as_str()
        .unwrap_or_else(|| panic!("no podIP: {status}"))
        .to_string()
}

/// A web server pod: its page says `name`, its environment its Downward
/// API addresses; SIGTERM stops it.
fn server(name: &str, ports: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{ name: {name} }}
spec:
  terminationGracePeriodSeconds: 2
  containers:
    - name: web
      image: busybox
      command: ["sh", "-c", "mkdir -p /tmp/www; echo hello from {name} > /tmp/www/index.html; echo POD_IP=$POD_IP POD_IPS=$POD_IPS HOST_IP=$HOST_IP HOST_IPS=$HOST_IPS URL=$URL; httpd -f -p 80 -h /tmp/www & trap 'kill $!; exit 0' TERM; wait"]
      env:
        - {{ name: POD_IP, valueFrom: {{ fieldRef: {{ fieldPath: status.podIP }} }} }}
        - {{ name: POD_IPS, valueFrom: {{ fieldRef: {{ fieldPath: status.podIPs }} }} }}
        - {{ name: HOST_IP, valueFrom: {{ fieldRef: {{ fieldPath: status.hostIP }} }} }}
        - {{ name: HOST_IPS, valueFrom: {{ fieldRef: {{ fieldPath: status.hostIPs }} }} }}
        - {{ name: URL, value: "http://$(POD_IP):80/" }}
      ports: {ports}
"#
    )
}

/// Two pods on contrib/cni's example network: each has an address of the
/// range (status.podIP is the address inside the pod, the Downward API and
/// /etc/hosts have it), they reach each other by pod IP, a client on the
/// node's network reaches one through its hostPort (portmap), and `pod rm`
/// leaves no veth, namespace, lease, cached result or rule.
#[test]
fn pods_reach_each_other_by_pod_ip_and_a_host_port_from_outside() {
    let lab = NetLab::new();
    lab.example_network(&[]);
    lab.run("a", &server("a", "[{containerPort: 80, hostPort: 8080}]"));
    lab.run("b", &server("b", "[]"));
    let a = lab.wait_running("a");
    let b = lab.wait_running("b");
    let (ip_a, ip_b) = (pod_ip(&a), pod_ip(&b));
    assert!(
        ip_a.starts_with(POD_NET) && ip_b.starts_with(POD_NET),
        "{ip_a} {ip_b}"
    );
    assert_ne!(ip_a, ip_b);
    assert_eq!(a["status"]["podIPs"], serde_json::json!([{ "ip": ip_a }]));
    assert_eq!(a["status"]["hostIP"], NODE_IP, "{a}");
    assert_eq!(
        a["status"]["hostIPs"],
        serde_json::json!([{ "ip": NODE_IP }])
    );
    let network = a["metadata"]["annotations"]["peapod.io/network"]
        .as_str()
        .unwrap();
    assert!(network.starts_with("cni: peapod ("), "{network}");

    // The address is the one inside the pod; the Downward API and /etc/hosts have it.
    let addr = lab.exec_ok("a", &["ip", "-o", "-4", "addr", "show", "dev", "eth0"]);
    assert!(addr.contains(&format!(" {ip_a}/24 ")), "{addr}");
    wait_until(
        "a's environment in its log",
        Duration::from_secs(10),
        || lab.pods().logs("a", "web").contains("POD_IP="),
    );
    let log = lab.pods().logs("a", "web");
    assert!(
        log.contains(&format!(
            "POD_IP={ip_a} POD_IPS={ip_a} HOST_IP={NODE_IP} HOST_IPS={NODE_IP} URL=http://{ip_a}:80/"
        )),
        "{log}"
    );
    let hosts = lab.exec_ok("a", &["cat", "/etc/hosts"]);
    assert!(
        hosts.starts_with("# Kubernetes-managed hosts file.\n"),
        "{hosts}"
    );
    assert!(hosts.contains(&format!("\n{ip_a}\ta\n")), "{hosts}");
    // ClusterFirst without cluster DNS: the node's resolver file (Default).
    let resolv = lab.exec_ok("a", &["cat", "/etc/resolv.conf"]);
    assert_eq!(resolv, "search corp.example\nnameserver 192.0.2.53\n");

    // Pod to pod, by pod IP.
    lab.exec_ok("b", &["ping", "-c", "1", "-W", "2", &ip_a]);
    let page = lab.exec_ok(
        "b",
        &[
            "sh",
            "-c",
            &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip_a} 80"),
        ],
    );
    assert!(page.contains("hello from a"), "{page}");

    // From another machine on the node's network, through the hostPort.
    let mut last = String::new();
    wait_until(
        "the client reaches a through its host port",
        Duration::from_secs(15),
        || {
            last = lab.http_get(&lab.client, NODE_IP, 8080);
            last.contains("hello from a")
        },
    );
    let rules = lab.in_node_ok("iptables-save", &["-t", "nat"]);
    assert!(
        rules.contains(&uid_of(&a)) && rules.contains("CNI-DN-"),
        "{rules}"
    );
    assert_eq!(lab.leases().len(), 2);

    let (uid_a, uid_b) = (uid_of(&a), uid_of(&b));
    lab.ok(&["pod", "rm", "--force", "a"]);
    let after = lab.http_get(&lab.client, NODE_IP, 8080);
    assert!(
        !after.contains("hello"),
        "still served after pod rm: {after}"
    );
    assert_eq!(lab.leases(), std::slice::from_ref(&ip_b));
    lab.finish(&[&uid_a, &uid_b]);
}

/// A pod whose supervisor was SIGKILLed: `pod rm` adopts and stops it, and
/// its network goes as it would have (DEL from the CNI cache, the pin).
#[test]
fn a_killed_supervisor_then_pod_rm_leaves_no_network() {
    let lab = NetLab::new();
    lab.example_network(&[]);
    lab.run("k", &server("k", "[{containerPort: 80, hostPort: 8081}]"));
    let k = lab.wait_running("k");
    let uid = uid_of(&k);
    let status = lab.pods().status_file(&uid);
    let supervisor = status["supervisor_pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(supervisor),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until("the supervisor to be gone", Duration::from_secs(10), || {
        !is_alive(supervisor)
    });
    // Still on the network without its supervisor.
    let ip = pod_ip(&k);
    let ping = output_of(in_netns(
        &lab.node,
        &mut busybox(&["ping", "-c", "1", "-W", "2", &ip]),
    ));
    assert!(ping.status.success(), "{}", text(&ping));
    assert_eq!(lab.leases(), [ip]);
    lab.ok(&["pod", "rm", "--force", "k"]);
    lab.finish(&[&uid]);
}

/// A missing plugin, a broken config and a plugin failing after bridge
/// succeeded: the pod stays Pending with the kubelet's FailedCreatePodSandBox
/// naming the file (and plugin), nothing of the network is left meanwhile,
/// and it is tried again: once the config is fixed, the pod runs. A bad
/// dnsConfig is refused at admission, naming the field, making nothing.
#[test]
fn network_failures_name_the_file_leave_nothing_and_are_retried() {
    let lab = NetLab::new();
    let missing = lab.example_network(&[serde_json::json!({"type": "no-such-plugin"})]);
    let out = lab.run("f", &server("f", "[]"));
    let want =
        "FailedCreatePodSandBox: Failed to create pod sandbox: failed to set up network for sandbox";
    assert!(out.contains(want), "{out}");
    assert!(
        out.contains(&format!(
            "{}: plugin \"no-such-plugin\" not found in {PLUGINS}",
            missing.display()
        )),
        "{out}"
    );
    let f = lab.inspect("f");
    assert_eq!(f["status"]["phase"], "Pending");
    let condition = f["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodReadyToStartContainers")
        .unwrap()
        .clone();
    assert_eq!(condition["status"], "False");
    assert_eq!(condition["reason"], "FailedCreatePodSandBox");
    assert!(f["status"]["podIP"].is_null(), "{f}");
    let uid = uid_of(&f);
    lab.assert_no_pod_network(&[&uid]);

    // A broken config: the retries now fail on it, and say so.
    std::fs::write(&missing, "{\"cniVersion\": \"1.0.0\", \"name\": ").unwrap();
    let mut message = String::new();
    wait_until(
        "the retry to report the broken file",
        Duration::from_secs(15),
        || {
            let f = lab.inspect("f");
            message = f["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == "PodReadyToStartContainers")
                .and_then(|c| c["message"].as_str())
                .unwrap_or_default()
                .to_string();
            message.contains("EOF while parsing")
        },
    );
    assert!(
        message.contains(&format!("{}: EOF while parsing", missing.display())),
        "{message}"
    );
    lab.assert_no_pod_network(&[&uid]);

    // A chained plugin failing after bridge made the veth and took a lease:
    // the ADD is undone.
    lab.example_network(&[serde_json::json!({
        "type": "tuning", "sysctl": {"net.ipv4.conf.eth0.no_such_setting": "1"}
    })]);
    wait_until(
        "the retry to report tuning's failure",
        Duration::from_secs(15),
        || {
            let f = lab.inspect("f");
            f["status"]["conditions"]
                .to_string()
                .contains("plugin tuning failed (ADD)")
        },
    );
    lab.assert_no_pod_network(&[&uid]);

    // Fixed: the next try makes the sandbox.
    lab.example_network(&[]);
    let f = lab.wait_running("f");
    assert!(pod_ip(&f).starts_with(POD_NET), "{f}");
    let ready = f["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodReadyToStartContainers")
        .unwrap()
        .clone();
    assert_eq!(ready["status"], "True", "{ready}");
    assert!(ready["reason"].is_null(), "{ready}");

    // A bad dnsConfig never gets that far.
    let bad = lab.pods().manifest(
        "dns",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: dns}\nspec:\n  dnsPolicy: None\n  dnsConfig: {nameservers: [dns.example]}\n  containers: [{name: c, image: busybox}]\n",
    );
    let out = lab.peapod(&["pod", "run", "-d", "-f", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        format!(
            "peapod: {}: spec.dnsConfig.nameservers[0]: invalid value \"dns.example\": must be a valid IP address",
            bad.display()
        )
    );
    assert!(!lab.ok(&["pod", "ps"]).contains("dns "));
    lab.finish(&[&uid]);
}

/// A free TCP port on the host's 127.0.0.1 (free when asked).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// hostNetwork, hostPID and hostIPC on the real host, as the kubelet applies
/// them: the pod sees the host's interfaces and its server answers on the
/// host's 127.0.0.1, podIP is the node's address, /etc/hosts is the node's
/// with the kubelet's host-network header, the hostname is the host's; it
/// sees the host's processes and shares a SysV segment made on the host.
#[test]
fn host_namespaces_are_the_hosts() {
    let env = PodEnv::new();
    let port = free_port();
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{ name: hostns }}
spec:
  hostNetwork: true
  hostPID: true
  hostIPC: true
  terminationGracePeriodSeconds: 2
  hostAliases: [{{ ip: 10.1.2.3, hostnames: [extra.example] }}]
  containers:
    - name: web
      image: busybox
      command: ["sh", "-c", "mkdir -p /tmp/www; echo hello from the host network > /tmp/www/index.html; echo POD_IP=$POD_IP HOST_IP=$HOST_IP; httpd -f -p 127.0.0.1:{port} -h /tmp/www & trap 'kill $!; exit 0' TERM; wait"]
      env:
        - {{ name: POD_IP, valueFrom: {{ fieldRef: {{ fieldPath: status.podIP }} }} }}
        - {{ name: HOST_IP, valueFrom: {{ fieldRef: {{ fieldPath: status.hostIP }} }} }}
      ports: [{{ containerPort: {port} }}]
"#
    );
    let shm = output_of(Command::new("ipcmk").args(["-M", "4096"]));
    let shm_text = text(&shm);
    assert!(shm.status.success(), "ipcmk: {shm_text}");
    let shm_id: String = shm_text.trim().rsplit(' ').next().unwrap().to_string();
    struct Segment(String);
    impl Drop for Segment {
        fn drop(&mut self) {
            let _ = Command::new("ipcrm").args(["-m", &self.0]).status();
        }
    }
    let _segment = Segment(shm_id.clone());

    env.run("hostns", &yaml);
    let status = env.wait_phase("hostns", "Running", false);
    let node_ips: Vec<String> = peapod::net::node::node_ips()
        .iter()
        .map(IpAddr::to_string)
        .collect();
    assert!(!node_ips.is_empty(), "this host has no global address");
    assert_eq!(status["status"]["podIP"], node_ips[0].as_str(), "{status}");
    assert_eq!(status["status"]["hostIP"], node_ips[0].as_str(), "{status}");
    assert_eq!(status["status"]["podIPs"], status["status"]["hostIPs"]);
    assert_eq!(
        status["metadata"]["annotations"]["peapod.io/network"],
        "host"
    );
    let exec = |args: &[&str]| {
        let mut all = vec!["pod", "exec", "hostns", "--"];
        all.extend_from_slice(args);
        env.ok(&all)
    };

    // The host's interfaces and loopback.
    let host_links = text(&output_of(Command::new("ip").args(["-o", "link", "show"])));
    let pod_links = exec(&["ip", "-o", "link", "show"]);
    let names = |text: &str| -> Vec<String> {
        let mut names: Vec<String> = text
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap().to_string())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(&pod_links), names(&host_links));
    let mut page = String::new();
    wait_until(
        "the pod's server on the host's 127.0.0.1",
        Duration::from_secs(10),
        || {
            page = std::net::TcpStream::connect(("127.0.0.1", port))
                .and_then(|mut s| {
                    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
                    let mut text = String::new();
                    s.read_to_string(&mut text)?;
                    Ok(text)
                })
                .unwrap_or_default();
            page.contains("hello from the host network")
        },
    );
    wait_until(
        "the pod's environment in its log",
        Duration::from_secs(10),
        || env.logs("hostns", "web").contains("POD_IP="),
    );
    let log = env.logs("hostns", "web");
    assert!(
        log.contains(&format!("POD_IP={0} HOST_IP={0}", node_ips[0])),
        "{log}"
    );
    // The kubelet's hosts file for host-network pods; the host's name.
    let hosts = exec(&["cat", "/etc/hosts"]);
    let node_hosts = std::fs::read_to_string("/etc/hosts").unwrap();
    assert_eq!(
        hosts,
        format!(
            "# Kubernetes-managed hosts file (host network).\n{node_hosts}\n# Entries added by HostAliases.\n10.1.2.3\textra.example\n"
        )
    );
    let hostname = exec(&["hostname"]);
    assert_eq!(hostname.trim(), peapod::net::node::host_name());
    assert_eq!(exec(&["cat", "/etc/hostname"]).trim(), hostname.trim());

    // The host's processes: this test's own.
    let me = std::process::id().to_string();
    let cmdline = exec(&["cat", &format!("/proc/{me}/cmdline")]);
    let own = std::fs::read_to_string(format!("/proc/{me}/cmdline")).unwrap();
    assert_eq!(cmdline, own);
    // The host's SysV IPC (busybox has no ipcs: the kernel's own list).
    let segments = exec(&["cat", "/proc/sysvipc/shm"]);
    assert!(
        segments
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(&shm_id)),
        "segment {shm_id} not seen: {segments}"
    );

    // Nothing of a network of its own was made.
    assert_eq!(
        entries(&env.root.path().join("netns")),
        Vec::<String>::new()
    );
    env.finish();
}

/// kubeadm-shaped control-plane manifests (busybox stand-ins) under `peapod
/// static` on the node: hostNetwork pods with hostPath DirectoryOrCreate and
/// FileOrCreate volumes, priorityClassName system-node-critical, a
/// RuntimeDefault seccomp profile, requests and probes on 127.0.0.1, serving
/// on the node's 127.0.0.1; and a pod on the CNI network with cluster DNS,
/// all set from the daemon's config file. The daemon removes a pod whose
/// file goes, and nothing of its network is left.
#[test]
fn static_control_plane_pods_on_the_node() {
    let lab = NetLab::new();
    lab.example_network(&[]);
    let work = lab.dir.path();
    let manifests = work.join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    let config = work.join("static.yaml");
    std::fs::write(
        &config,
        format!(
            "manifestDir: {}\nnodeName: cp-node\nrescanSeconds: 1\nnetwork:\n  cniConfDir: {}\n  cniBinDirs: [{PLUGINS}]\n  cniCacheDir: {}\n  clusterDNS: [10.96.0.10]\n  clusterDomain: cluster.local\n  resolvConf: {}\n",
            manifests.display(),
            work.join("net.d").display(),
            lab.cache_dir().display(),
            work.join("resolv.conf").display()
        ),
    )
    .unwrap();
    let control_plane = |name: &str,
                         port: u16,
                         volume: &str,
                         path: &Path,
                         kind: &str,
                         mount: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: kube-system
  labels: {{ component: {name}, tier: control-plane }}
  annotations: {{ kubeadm.kubernetes.io/{name}.advertise-address.endpoint: "{NODE_IP}:{port}" }}
spec:
  hostNetwork: true
  priorityClassName: system-node-critical
  securityContext:
    seccompProfile: {{ type: RuntimeDefault }}
  terminationGracePeriodSeconds: 2
  containers:
    - name: {name}
      image: busybox
      command: ["sh", "-c", "mkdir -p /tmp/www; echo ok > /tmp/www/livez; echo ok > /tmp/www/readyz; echo $NODE_NAME $POD_IP > /tmp/www/index.html; httpd -f -p 127.0.0.1:{port} -h /tmp/www & trap 'kill $!; exit 0' TERM; wait"]
      env:
        - {{ name: NODE_NAME, valueFrom: {{ fieldRef: {{ fieldPath: spec.nodeName }} }} }}
        - {{ name: POD_IP, valueFrom: {{ fieldRef: {{ fieldPath: status.podIP }} }} }}
      resources:
        requests: {{ cpu: 250m, memory: 64Mi }}
      livenessProbe:
        httpGet: {{ host: 127.0.0.1, path: /livez, port: {port}, scheme: HTTP }}
        initialDelaySeconds: 10
        periodSeconds: 10
        timeoutSeconds: 15
        failureThreshold: 8
      readinessProbe:
        httpGet: {{ host: 127.0.0.1, path: /readyz, port: {port}, scheme: HTTP }}
        periodSeconds: 1
        timeoutSeconds: 15
      startupProbe:
        httpGet: {{ host: 127.0.0.1, path: /livez, port: {port}, scheme: HTTP }}
        initialDelaySeconds: 10
        periodSeconds: 10
        timeoutSeconds: 15
        failureThreshold: 24
      volumeMounts:
        - {{ name: {volume}, mountPath: {mount} }}
  volumes:
    - name: {volume}
      hostPath: {{ path: {path}, type: {kind} }}
"#,
            path = path.display()
        )
    };
    let etcd_data = work.join("var/lib/etcd");
    let scheduler_conf = work.join("etc/kubernetes/scheduler.conf");
    std::fs::write(
        manifests.join("etcd.yaml"),
        control_plane(
            "etcd",
            2381,
            "etcd-data",
            &etcd_data,
            "DirectoryOrCreate",
            "/var/lib/etcd",
        ),
    )
    .unwrap();
    std::fs::write(
        manifests.join("kube-scheduler.yaml"),
        control_plane(
            "kube-scheduler",
            10259,
            "kubeconfig",
            &scheduler_conf,
            "FileOrCreate",
            "/etc/kubernetes/scheduler.conf",
        ),
    )
    .unwrap();
    std::fs::write(
        manifests.join("dns.yaml"),
        server("dns", "[]").replace(
            "metadata: { name: dns }",
            "metadata: { name: dns, namespace: kube-system }",
        ),
    )
    .unwrap();

    let log = work.join("daemon.log");
    let mut daemon = lab.cmd(&["static", "--config", config.to_str().unwrap()]);
    for var in [
        "PEAPOD_CNI_CONF_DIR",
        "PEAPOD_CNI_CACHE_DIR",
        "PEAPOD_CNI_BIN_DIRS",
        "PEAPOD_RESOLV_CONF",
    ] {
        daemon.env_remove(var);
    }
    let daemon = daemon
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .unwrap();
    struct Daemon(Child);
    impl Drop for Daemon {
        fn drop(&mut self) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = self.0.wait();
        }
    }
    let daemon = Daemon(daemon);
    let daemon_log = || std::fs::read_to_string(&log).unwrap_or_default();

    wait_until("the control plane to run", Duration::from_secs(30), || {
        let ps = lab.ok(&["pod", "ps"]);
        if !(ps.contains("etcd-cp-node")
            && ps.contains("kube-scheduler-cp-node")
            && ps.contains("dns-cp-node"))
        {
            return false;
        }
        [
            "kube-system/etcd-cp-node",
            "kube-system/kube-scheduler-cp-node",
            "kube-system/dns-cp-node",
        ]
        .iter()
        .all(|name| {
            let s = lab.inspect(name);
            s["status"]["containerStatuses"]
                .as_array()
                .is_some_and(|a| a.iter().all(|c| c["state"]["running"].is_object()))
        })
    });
    // Read once it runs: a status read while the pod was still starting is empty.
    let etcd = lab.inspect("kube-system/etcd-cp-node");
    assert!(
        etcd_data.is_dir() && scheduler_conf.is_file(),
        "hostPath volumes not made"
    );
    assert_eq!(etcd["status"]["podIP"], NODE_IP, "{etcd}");
    // Served on the node's 127.0.0.1, with the daemon's node name.
    for port in ["2381", "10259"] {
        let mut page = String::new();
        wait_until(
            "a control-plane server on the node's 127.0.0.1",
            Duration::from_secs(10),
            || {
                let mut nc = busybox(&["nc", "-w", "2", "127.0.0.1", port]);
                let request = work.join("request");
                std::fs::write(&request, "GET / HTTP/1.0\r\n\r\n").unwrap();
                nc.stdin(File::open(&request).unwrap());
                page = text(&output_of(in_netns(&lab.node, &mut nc)));
                page.contains("cp-node")
            },
        );
        assert!(page.contains(&format!("cp-node {NODE_IP}")), "{page}");
    }
    // The CNI pod, with cluster DNS from the config file.
    let dns = lab.inspect("kube-system/dns-cp-node");
    let dns_uid = uid_of(&dns);
    assert!(pod_ip(&dns).starts_with(POD_NET), "{dns}");
    let resolv = lab.exec_ok("kube-system/dns-cp-node", &["cat", "/etc/resolv.conf"]);
    assert_eq!(
        resolv,
        "search kube-system.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.96.0.10\noptions ndots:5\n"
    );
    // hostNetwork + ClusterFirst: the node's resolver (the kubelet's rule).
    let resolv = lab.exec_ok("kube-system/etcd-cp-node", &["cat", "/etc/resolv.conf"]);
    assert_eq!(resolv, "search corp.example\nnameserver 192.0.2.53\n");

    // The file goes: the daemon removes the pod, and its network.
    std::fs::remove_file(manifests.join("dns.yaml")).unwrap();
    wait_until(
        "the daemon to remove the pod",
        Duration::from_secs(30),
        || !lab.pods().pod_dir(&dns_uid).exists(),
    );
    assert_eq!(lab.leases(), Vec::<String>::new(), "{}", daemon_log());
    assert!(!lab.pods().root.path().join("netns").join(&dns_uid).exists());
    assert!(!lab
        .cache_dir()
        .join("results")
        .join(format!("{dns_uid}:eth0"))
        .exists());
    drop(daemon);
    lab.finish(&[&dns_uid]);
}

/// A pod with `hostUsers: false` on a CNI network: its network namespace is
/// made owned by its user namespace (its sandbox, inside it, can join no
/// other), it serves on port 80 and reaches another pod by pod IP; its
/// supervisor killed, `pod rm` leaves no network, pin or mount.
#[test]
fn a_pod_with_its_own_user_namespace_is_on_the_network() {
    let lab = NetLab::new();
    lab.example_network(&[]);
    let own = server("u", "[]").replace("spec:\n", "spec:\n  hostUsers: false\n");
    lab.run("u", &own);
    lab.run("b", &server("b", "[]"));
    let u = lab.wait_running("u");
    let b = lab.wait_running("b");
    let map = lab.exec_ok("u", &["cat", "/proc/self/uid_map"]);
    assert!(map.split_whitespace().nth(1) != Some("0"), "{map}");
    let (uid_u, uid_b) = (uid_of(&u), uid_of(&b));
    let netns = PathBuf::from(
        lab.pods().status_file(&uid_u)["sandbox_pid"]
            .as_i64()
            .map(|pid| format!("/proc/{pid}/ns/net"))
            .unwrap(),
    );
    assert!(netns.exists());
    let page = lab.exec_ok(
        "b",
        &[
            "sh",
            "-c",
            &format!(
                "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {} 80",
                pod_ip(&u)
            ),
        ],
    );
    assert!(page.contains("hello from u"), "{page}");
    lab.exec_ok("u", &["ping", "-c", "1", "-W", "2", &pod_ip(&b)]);
    let supervisor = lab.pods().status_file(&uid_u)["supervisor_pid"]
        .as_i64()
        .unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(supervisor),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until("the supervisor to be gone", Duration::from_secs(10), || {
        !is_alive(supervisor)
    });
    lab.ok(&["pod", "rm", "--force", "u"]);
    lab.finish(&[&uid_u, &uid_b]);
}
