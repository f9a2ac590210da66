//! The network parts for real: pinned namespaces, Debian's CNI plugins
//! (bridge, host-local, portmap, tuning from /usr/lib/cni) on bridges,
//! address ranges and namespaces each test makes for itself, traffic only
//! between them. Everything is removed by Drop guards, also when a test fails.

use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use peapod::net::cni::{AttachRequest, Cni, CniError, PodRef, PortMapping, Protocol};
use peapod::net::{netns, NetworkSettings};

use crate::common::{busybox_rootfs, in_netns, output_of, require_root, wait_until};

const PLUGINS: &str = "/usr/lib/cni";
static SEQ: AtomicUsize = AtomicUsize::new(0);

/// One test's network world: a temp folder (netns pins, IPAM data, CNI cache,
/// config), a bridge name and a private /24 of its own.
struct Lab {
    dir: tempfile::TempDir,
    settings: NetworkSettings,
    bridge: String,
    /// The first three octets of the pod subnet.
    net: String,
    /// The first three octets of a link subnet (a /30 per test).
    link: String,
    /// The third octet of both.
    k: usize,
    namespaces: Vec<PathBuf>,
    servers: Vec<Child>,
}

impl Lab {
    fn new() -> Self {
        require_root();
        assert!(
            Path::new(PLUGINS).join("bridge").is_file(),
            "{PLUGINS}/bridge is missing: install containernetworking-plugins"
        );
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id() as usize;
        let dir = tempfile::Builder::new()
            .prefix("peapod-net-")
            .tempdir()
            .unwrap();
        let k = (pid * 7 + seq * 31) % 250 + 1;
        let settings = NetworkSettings {
            cni_conf_dir: dir.path().join("net.d"),
            cni_bin_dirs: vec![PLUGINS.into()],
            cni_cache_dir: dir.path().join("cache"),
            cni_timeout: Duration::from_secs(30),
            netns_dir: dir.path().join("netns"),
            ..Default::default()
        };
        std::fs::create_dir(&settings.cni_conf_dir).unwrap();
        Lab {
            bridge: format!("ppn{}x{seq}", pid % 100_000),
            net: format!("10.222.{k}"),
            link: format!("10.223.{k}"),
            k,
            dir,
            settings,
            namespaces: Vec::new(),
            servers: Vec::new(),
        }
    }

    fn cni(&self) -> Cni {
        Cni::new(&self.settings)
    }

    fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    fn network_name(&self) -> String {
        format!("{}-net", self.bridge)
    }

    /// bridge + host-local (+ more plugins), in this test's bridge and range.
    fn conflist(&self, gateway: bool, more: &str) -> PathBuf {
        let text = format!(
            r#"{{
  "cniVersion": "1.0.0",
  "cniVersions": ["0.4.0", "1.0.0", "1.1.0"],
  "name": "{name}",
  "plugins": [
    {{
      "type": "bridge", "bridge": "{bridge}", "isGateway": {gateway}, "ipMasq": false,
      "ipam": {{
        "type": "host-local", "dataDir": "{ipam}",
        "ranges": [[{{"subnet": "{net}.0/24", "rangeStart": "{net}.10", "rangeEnd": "{net}.250", "gateway": "{net}.1"}}]],
        "routes": [{{"dst": "0.0.0.0/0"}}]
      }}
    }}{more}
  ]
}}"#,
            name = self.network_name(),
            bridge = self.bridge,
            ipam = self.ipam_dir().display(),
            net = self.net,
        );
        let path = self.settings.cni_conf_dir.join("10-test.conflist");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn netns(&mut self, name: &str) -> PathBuf {
        let path = netns::create(&self.settings.netns_dir, name).unwrap();
        self.namespaces.push(path.clone());
        path
    }

    fn request(&self, id: &str, ns: &Path) -> AttachRequest {
        AttachRequest::new(
            id,
            ns,
            PodRef {
                namespace: "default".into(),
                name: id.into(),
                uid: format!("uid-{id}"),
            },
        )
    }

    /// host-local's leases: files named by address, one folder per network.
    fn lease_files(&self) -> Vec<String> {
        let names = |dir: &Path| -> Vec<std::fs::DirEntry> {
            std::fs::read_dir(dir)
                .map(|entries| entries.filter_map(Result::ok).collect())
                .unwrap_or_default()
        };
        let mut leases: Vec<String> = names(&self.ipam_dir())
            .iter()
            .flat_map(|network| names(&network.path()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.parse::<IpAddr>().is_ok())
            .collect();
        leases.sort();
        leases
    }

    fn cache_file(&self, id: &str) -> PathBuf {
        self.settings
            .cni_cache_dir
            .join("results")
            .join(format!("{id}:eth0"))
    }

    /// A busybox applet run in the network namespace at `ns`.
    fn serve(&mut self, ns: &Path, argv: &[&str]) {
        let child = in_netns(ns, &mut busybox(argv))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.servers.push(child);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.servers {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Pod interfaces go with their namespaces; the bridge is ours to remove.
        for ns in self.namespaces.iter().rev() {
            let _ = netns::remove(ns);
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
    }
}

fn busybox(argv: &[&str]) -> Command {
    let mut cmd = Command::new(busybox_rootfs().join("bin/busybox"));
    cmd.args(argv);
    cmd
}

fn run_in(ns: &Path, program: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args);
    output_of(in_netns(ns, &mut cmd))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn link_exists(ns: Option<&Path>, name: &str) -> bool {
    let args = ["link", "show", "dev", name];
    let out = match ns {
        Some(ns) => run_in(ns, "ip", &args),
        None => output_of(Command::new("ip").args(args)),
    };
    out.status.success()
}

/// Runs the calling thread in another network namespace until dropped (only
/// this thread: network namespaces are per thread).
struct ThreadNetns(File);

impl ThreadNetns {
    fn enter(ns: &Path) -> Self {
        let own = File::open("/proc/thread-self/ns/net").unwrap();
        nix::sched::setns(
            File::open(ns).unwrap(),
            nix::sched::CloneFlags::CLONE_NEWNET,
        )
        .unwrap();
        ThreadNetns(own)
    }
}

impl Drop for ThreadNetns {
    fn drop(&mut self) {
        nix::sched::setns(&self.0, nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("back to the test's network namespace");
    }
}

#[test]
fn a_pinned_netns_has_lo_up_and_removes_idempotently() {
    let mut lab = Lab::new();
    let ns = lab.netns("pod");
    assert!(netns::is_pinned(&ns));
    let out = run_in(&ns, "ip", &["-o", "link", "show"]);
    let links = text(&out);
    assert!(out.status.success(), "{links}");
    // Only lo, and it is up.
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(
        links.starts_with("1: lo: <LOOPBACK,UP,LOWER_UP>"),
        "{links}"
    );
    let own = std::fs::read_link("/proc/self/ns/net").unwrap();
    let theirs = run_in(&ns, "readlink", &["/proc/self/ns/net"]);
    assert_ne!(
        String::from_utf8_lossy(&theirs.stdout).trim(),
        own.to_string_lossy()
    );
    let err = netns::create(&lab.settings.netns_dir, "pod").unwrap_err();
    assert!(err.to_string().ends_with("already exists"), "{err}");
    netns::remove(&ns).unwrap();
    assert!(!ns.exists() && !netns::is_pinned(&ns));
    netns::remove(&ns).unwrap();
}

/// Two pods on one bridge: ADD gives each an address of the range, they reach
/// each other, CHECK passes; DEL removes the veth, the lease and the cached
/// result, twice without harm, and a new process (a fresh `Cni`) needs
/// nothing but the cache.
#[test]
fn two_pods_on_a_bridge_ping_each_other_and_del_cleans_up() {
    let mut lab = Lab::new();
    lab.conflist(false, "");
    // A bridge of our own with a MAC of its own: one the plugin makes without
    // an address (isGateway false, so the host's ip_forward stays off) takes
    // the lowest MAC of its ports, which changes as pods come, and CHECK then
    // fails on the MAC that ADD recorded.
    let mac = format!("02:00:5e:{:02x}:{:02x}:01", std::process::id() % 256, lab.k);
    let out = output_of(Command::new("ip").args([
        "link",
        "add",
        "name",
        &lab.bridge,
        "address",
        &mac,
        "type",
        "bridge",
    ]));
    assert!(out.status.success(), "{}", text(&out));
    let out = output_of(Command::new("ip").args(["link", "set", "dev", &lab.bridge, "up"]));
    assert!(out.status.success(), "{}", text(&out));
    let (ns_a, ns_b) = (lab.netns("a"), lab.netns("b"));
    let (id_a, id_b) = (format!("{}a", lab.bridge), format!("{}b", lab.bridge));
    let a = lab.cni().add(&lab.request(&id_a, &ns_a)).unwrap();
    let b = lab.cni().add(&lab.request(&id_b, &ns_b)).unwrap();
    // Debian's plugins speak up to 1.0.0: negotiated down from 1.1.0.
    assert_eq!(a.cni_version, "1.0.0");
    let ip_a = a.pod_ips()[0];
    let ip_b = b.pod_ips()[0];
    assert!(
        ip_a.to_string().starts_with(&format!("{}.", lab.net)),
        "{ip_a}"
    );
    assert_ne!(ip_a, ip_b);
    let addr = text(&run_in(&ns_a, "ip", &["-o", "addr", "show", "dev", "eth0"]));
    assert!(addr.contains(&format!("{ip_a}/24")), "{addr}");
    assert_eq!(lab.lease_files(), {
        let mut l = vec![ip_a.to_string(), ip_b.to_string()];
        l.sort();
        l
    });
    let ip_b_text = ip_b.to_string();
    wait_until("a pings b", Duration::from_secs(10), || {
        busybox_in(&ns_a, &["ping", "-c", "1", "-W", "1", &ip_b_text])
            .status
            .success()
    });
    lab.cni().check(&id_a, "eth0").unwrap();
    lab.cni().check(&id_b, "eth0").unwrap();

    let host_veth = a
        .result
        .interfaces
        .iter()
        .find(|i| !i.in_pod() && i.name != lab.bridge)
        .map(|i| i.name.clone())
        .expect("the host end of the veth");
    assert!(link_exists(None, &host_veth));
    assert!(lab.cache_file(&id_a).is_file());
    lab.cni().del(&id_a, "eth0").unwrap();
    assert!(!link_exists(None, &host_veth), "{host_veth} is still there");
    assert!(!link_exists(Some(&ns_a), "eth0"));
    assert_eq!(lab.lease_files(), [ip_b.to_string()]);
    assert!(!lab.cache_file(&id_a).exists());
    lab.cni().del(&id_a, "eth0").unwrap();
    let err = lab.cni().check(&id_a, "eth0").unwrap_err();
    assert!(matches!(err, CniError::NotAttached { .. }), "{err}");
    netns::remove(&ns_a).unwrap();
    netns::remove(&ns_a).unwrap();

    // CHECK notices a pod whose interface went away; DEL still works, also
    // after the namespace is gone, and releases the lease.
    assert!(run_in(&ns_b, "ip", &["link", "del", "eth0"])
        .status
        .success());
    let err = lab.cni().check(&id_b, "eth0").unwrap_err().to_string();
    assert!(err.contains("plugin bridge failed (CHECK)"), "{err}");
    netns::remove(&ns_b).unwrap();
    lab.cni().del(&id_b, "eth0").unwrap();
    assert!(lab.lease_files().is_empty());
    let iptables = text(&output_of(&mut Command::new("iptables-save")));
    assert!(!iptables.contains(&lab.bridge), "{iptables}");
}

/// GET / from `ip:port` with busybox nc (its wget crashes here), from the
/// namespace at `ns`; what came back, or the error.
fn http_get(lab: &Lab, ns: &Path, ip: &str, port: u16) -> String {
    let request = lab.dir.path().join("request");
    std::fs::write(&request, "GET / HTTP/1.0\r\n\r\n").unwrap();
    let port = port.to_string();
    let mut nc = busybox(&["nc", "-w", "2", ip, &port]);
    nc.stdin(File::open(&request).unwrap());
    text(&output_of(in_netns(ns, &mut nc)))
}

fn busybox_in(ns: &Path, argv: &[&str]) -> Output {
    output_of(in_netns(ns, &mut busybox(argv)))
}

/// portmap with contrib/cni's example network: a client in a third namespace
/// reaches a pod's server through the node's hostPort; DEL removes portmap's
/// iptables/nft rules. The "node" is a namespace of the test's own, so the
/// example's bridge, range, ip_forward (isGateway turns it on) and rules are
/// the test's, not the host's; only the IPAM data folder is changed.
#[test]
fn a_host_port_reaches_the_pod_through_portmap_and_del_removes_the_rules() {
    let mut lab = Lab::new();
    let example = crate::common::repo().join("contrib/cni/10-peapod.conflist");
    let mut conf: serde_json::Value =
        serde_json::from_slice(&std::fs::read(example).unwrap()).unwrap();
    conf["plugins"][0]["ipam"]["dataDir"] = lab.ipam_dir().to_str().unwrap().into();
    // CHECK is exercised too (the example disables it, see below).
    conf.as_object_mut().unwrap().remove("disableCheck");
    let file = lab.settings.cni_conf_dir.join("10-peapod.conflist");
    std::fs::write(&file, serde_json::to_vec(&conf).unwrap()).unwrap();
    let node = lab.netns("node");
    let pod = lab.netns("pod");
    let client = lab.netns("client");
    let id = format!("{}p", lab.bridge);
    let (node_end, client_end) = (format!("{}h", lab.bridge), format!("{}c", lab.bridge));
    let node_ip = format!("{}.1", lab.link);
    let client_ip = format!("{}.2", lab.link);

    let www = lab.dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello from the pod\n").unwrap();
    lab.serve(
        &pod,
        &["httpd", "-f", "-p", "80", "-h", www.to_str().unwrap()],
    );

    let attachment = {
        let _in_node = ThreadNetns::enter(&node);
        for args in [
            vec![
                "link",
                "add",
                &node_end,
                "type",
                "veth",
                "peer",
                "name",
                &client_end,
            ],
            vec![
                "link",
                "set",
                &client_end,
                "netns",
                client.to_str().unwrap(),
            ],
            vec!["addr", "add", &format!("{node_ip}/30"), "dev", &node_end],
            vec!["link", "set", &node_end, "up"],
        ] {
            let out = output_of(Command::new("ip").args(&args));
            assert!(out.status.success(), "ip {args:?}: {}", text(&out));
        }
        let mut request = lab.request(&id, &pod);
        request.port_mappings = vec![PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: Protocol::Tcp,
            host_ip: None,
        }];
        let attachment = lab.cni().add(&request).unwrap();
        let rules = text(&output_of(&mut Command::new("iptables-save")));
        assert!(rules.contains(&id) && rules.contains("CNI-DN-"), "{rules}");
        attachment
    };
    for args in [
        vec![
            "addr",
            "add",
            &format!("{client_ip}/30"),
            "dev",
            &client_end,
        ],
        vec!["link", "set", &client_end, "up"],
    ] {
        let out = run_in(&client, "ip", &args);
        assert!(out.status.success(), "ip {args:?}: {}", text(&out));
    }
    assert_eq!(attachment.network, "peapod");
    let pod_ip = attachment.pod_ips()[0];
    assert!(pod_ip.to_string().starts_with("10.86.0."), "{pod_ip}");

    let mut last = String::new();
    wait_until(
        "the client reaches the pod through the host port",
        Duration::from_secs(15),
        || {
            last = http_get(&lab, &client, &node_ip, 8080);
            last.contains("hello from the pod")
        },
    );

    let _in_node = ThreadNetns::enter(&node);
    // Debian's portmap (plugins 1.1.1) also looks for IPv6 rules of an IPv4-only
    // pod on CHECK (containernetworking/plugins#819): that failure is the
    // plugin's; bridge and host-local passed before it.
    if let Err(e) = lab.cni().check(&id, "eth0") {
        let e = e.to_string();
        assert!(
            e.contains("plugin portmap failed (CHECK): error 999: could not check ipv6 dnat"),
            "{e}"
        );
    }
    lab.cni().del(&id, "eth0").unwrap();
    let rules = text(&output_of(&mut Command::new("iptables-save")));
    assert!(
        !rules.contains(&id) && !rules.contains("CNI-DN-"),
        "{rules}"
    );
    let nft = text(&output_of(Command::new("nft").args(["list", "ruleset"])));
    assert!(!nft.contains(&id) && !nft.contains("CNI-DN-"), "{nft}");
    assert!(lab.lease_files().is_empty());
    lab.cni().del(&id, "eth0").unwrap();
    drop(_in_node);
    let after = http_get(&lab, &client, &node_ip, 8080);
    assert!(!after.contains("hello"), "still served after DEL: {after}");
}

/// Failures name the file and the plugin and leave no interface, lease or
/// cache: a missing plugin (nothing runs), a broken config, and a chained
/// plugin failing after bridge succeeded (the ADD is undone).
#[test]
fn failures_name_the_plugin_and_the_file_and_leave_nothing() {
    let mut lab = Lab::new();
    let ns = lab.netns("pod");
    let id = format!("{}f", lab.bridge);
    let cni = lab.cni();
    let check_nothing_left = |lab: &Lab| {
        assert!(!link_exists(Some(&ns), "eth0"));
        assert!(lab.lease_files().is_empty(), "{:?}", lab.lease_files());
        assert!(!lab.cache_file(&id).exists());
    };

    let file = lab.conflist(false, r#", {"type": "no-such-plugin"}"#);
    let err = cni.add(&lab.request(&id, &ns)).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}: plugin \"no-such-plugin\" not found in {PLUGINS}",
            file.display()
        )
    );
    assert!(
        !link_exists(None, &lab.bridge),
        "nothing may run before the plugins are found"
    );
    check_nothing_left(&lab);

    std::fs::write(&file, "{\"cniVersion\": \"1.0.0\", \"name\": ").unwrap();
    let err = cni.add(&lab.request(&id, &ns)).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}: EOF while parsing", file.display())),
        "{err}"
    );
    check_nothing_left(&lab);

    let file = lab.conflist(
        false,
        r#", {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.no_such_setting": "1"}}"#,
    );
    let err = cni.add(&lab.request(&id, &ns)).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}: plugin tuning failed (ADD): ", file.display()))
            && err.contains("no_such_setting"),
        "{err}"
    );
    check_nothing_left(&lab);
    // The bridge plugin did run (and made its bridge); its veth is gone again.
    let out = output_of(Command::new("ip").args(["-o", "link", "show", "master", &lab.bridge]));
    assert!(text(&out).trim().is_empty(), "{}", text(&out));
}
