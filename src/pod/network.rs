//! A pod's network on the node, as the kubelet with containerd gives it.
//!
//! - A hostNetwork pod uses the node's network: no namespace, no CNI; its IPs
//!   are the node's.
//! - Any other pod gets a network namespace of its own. With a CNI network
//!   config in the node's config folder it is a pinned namespace
//!   (`<netns dir>/<id>`, `lo` up) that CNI ADD puts on the network; the pod's
//!   uid is the CNI container id and the namespace's name. Without one, the
//!   sandbox makes its own namespace with only `lo`, as before peapod knew
//!   CNI ("loopback only", which `pod inspect` says).
//!
//! What was done is recorded in the pod's folder (network.json) before it is
//! done, so that teardown (`release`) undoes exactly that, from any process,
//! also after a crash: CNI DEL (from the CNI cache), then the namespace's pin.
//! Both are idempotent.
//!
//! Also here: the pod's /etc/hosts, /etc/hostname and /etc/resolv.conf, as
//! the kubelet writes them for the pod's network mode and DNS policy.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::folder::{read_json, write_json_atomic, FolderError, PodFolder};
use super::model::{Pod, Protocol};
use super::settings::Settings;
use crate::net::cni::{self, AttachRequest, Cni, CniError, PodRef, PortMapping};
use crate::net::netns::{self, NetnsError};
use crate::net::{dns, hosts, node};

/// The annotation `pod inspect` shows: how the pod is on the network.
pub const NETWORK_ANNOTATION: &str = "peapod.io/network";

/// The address a pod without any other has its hostname on, in /etc/hosts.
const LOOPBACK_HOST: &str = "127.0.1.1";

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(transparent)]
    Cni(#[from] CniError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Folder(#[from] FolderError),
    #[error("write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How the pod is on the network: network.json in its folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "camelCase")]
pub enum NetworkRecord {
    /// hostNetwork: the node's network.
    Host,
    /// No CNI network config was found there: the sandbox's own namespace, lo only.
    #[serde(rename_all = "camelCase")]
    Loopback { conf_dir: PathBuf },
    /// A pinned namespace, put on a CNI network (once `network` is set, the
    /// ADD succeeded).
    #[serde(rename_all = "camelCase")]
    Cni {
        container_id: String,
        ifname: String,
        netns: PathBuf,
        #[serde(default)]
        network: Option<String>,
        #[serde(default)]
        config_file: Option<PathBuf>,
    },
}

impl NetworkRecord {
    /// The pinned namespace the sandbox joins, if the pod has one.
    pub fn netns(&self) -> Option<&Path> {
        match self {
            Self::Cni { netns, .. } => Some(netns),
            _ => None,
        }
    }

    /// What `pod inspect` says about it (the `peapod.io/network` annotation).
    pub fn describe(&self) -> String {
        match self {
            Self::Host => "host".into(),
            Self::Loopback { conf_dir } => format!(
                "loopback only: no CNI network config in {}",
                conf_dir.display()
            ),
            Self::Cni {
                network: Some(network),
                config_file,
                ..
            } => match config_file {
                Some(file) => format!("cni: {network} ({})", file.display()),
                None => format!("cni: {network}"),
            },
            Self::Cni { .. } => "cni: being set up".into(),
        }
    }
}

/// The pod's network once it is set up, or taken over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetwork {
    pub record: NetworkRecord,
    /// status.podIPs: from CNI, or the node's on hostNetwork.
    pub pod_ips: Vec<IpAddr>,
}

/// The CNI container id and namespace name of a pod: its uid, or a hash of
/// it where the uid is not a valid CNI id.
pub fn attachment_id(pod: &Pod) -> String {
    match cni::config::check_id(&pod.uid) {
        Ok(()) if pod.uid.len() <= 64 => pod.uid.clone(),
        _ => hex::encode(&Sha256::digest(pod.uid.as_bytes())[..16]),
    }
}

/// What the pod's folder says was done to its network, if anything.
pub fn record(folder: &PodFolder) -> Option<NetworkRecord> {
    read_json(&folder.network_file()).ok()
}

/// Sets up the pod's network before its sandbox is made. On failure nothing
/// of it is left (no namespace, attachment, lease or record).
pub fn setup(
    pod: &Pod,
    folder: &PodFolder,
    settings: &Settings,
) -> Result<PodNetwork, NetworkError> {
    if pod.host.network {
        let record = NetworkRecord::Host;
        write_json_atomic(&folder.network_file(), &record)?;
        return Ok(PodNetwork {
            record,
            pod_ips: node::node_ips(),
        });
    }
    let cni = Cni::new(&settings.network);
    let list = match cni.network() {
        Ok(list) => list,
        Err(CniError::NoConfig { dir }) => {
            let record = NetworkRecord::Loopback { conf_dir: dir };
            write_json_atomic(&folder.network_file(), &record)?;
            return Ok(PodNetwork {
                record,
                pod_ips: Vec::new(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    let id = attachment_id(pod);
    let netns_path = settings.network.netns_dir.join(&id);
    let mut record = NetworkRecord::Cni {
        container_id: id.clone(),
        ifname: cni::DEFAULT_IFNAME.into(),
        netns: netns_path,
        network: None,
        config_file: None,
    };
    // Recorded first: whatever happens next, teardown knows what to undo.
    write_json_atomic(&folder.network_file(), &record)?;
    // hostUsers: false: the pod's user namespace owns its network namespace.
    let userns = (!pod.host.users).then(|| super::security::userns::pin_path(folder));
    let attached = netns::create_owned(&settings.network.netns_dir, &id, userns.as_deref())
        .map_err(NetworkError::from)
        .and_then(|path| {
            let request = AttachRequest {
                port_mappings: port_mappings(pod),
                ..AttachRequest::new(
                    &id,
                    &path,
                    PodRef {
                        namespace: pod.namespace.clone(),
                        name: pod.name.clone(),
                        uid: pod.uid.clone(),
                    },
                )
            };
            Ok(cni.add_list(&list, &request)?)
        });
    let attachment = match attached {
        Ok(attachment) => attachment,
        Err(e) => {
            // The record goes only once nothing is left that it would undo.
            match release(folder, settings) {
                Ok(()) => {
                    let _ = fs::remove_file(folder.network_file());
                }
                Err(undo) => tracing::warn!("undoing the failed network setup: {undo}"),
            }
            return Err(e);
        }
    };
    if let NetworkRecord::Cni {
        network,
        config_file,
        ..
    } = &mut record
    {
        *network = Some(attachment.network.clone());
        *config_file = Some(attachment.config_file.clone());
    }
    write_json_atomic(&folder.network_file(), &record)?;
    Ok(PodNetwork {
        record,
        pod_ips: attachment.pod_ips(),
    })
}

/// The network of a pod whose supervisor died: its IPs from the CNI cache
/// (CHECKed; a failing CHECK is only a warning: Debian's plugins fail it
/// spuriously, see contrib/cni/README.md), or the node's on hostNetwork.
pub fn resume(folder: &PodFolder, settings: &Settings) -> Option<PodNetwork> {
    let record = record(folder)?;
    let pod_ips = match &record {
        NetworkRecord::Host => node::node_ips(),
        NetworkRecord::Loopback { .. } => Vec::new(),
        NetworkRecord::Cni {
            container_id,
            ifname,
            ..
        } => {
            let cni = Cni::new(&settings.network);
            if let Err(e) = cni.check(container_id, ifname) {
                tracing::warn!("CNI CHECK of the pod's network: {e}");
            }
            match cni.attachment(container_id, ifname) {
                Ok(Some(attachment)) => attachment.pod_ips(),
                Ok(None) => Vec::new(),
                Err(e) => {
                    tracing::warn!("the pod's CNI attachment: {e}");
                    Vec::new()
                }
            }
        }
    };
    Some(PodNetwork { record, pod_ips })
}

/// Undoes the pod's network: CNI DEL, then the namespace's pin. Nothing
/// recorded is nothing to do; twice is harmless. The record stays (it says
/// how the pod was on the network until its folder goes).
pub fn release(folder: &PodFolder, settings: &Settings) -> Result<(), NetworkError> {
    let path = folder.network_file();
    if !path.exists() {
        return Ok(());
    }
    let record: NetworkRecord = read_json(&path)?;
    if let NetworkRecord::Cni {
        container_id,
        ifname,
        netns,
        ..
    } = &record
    {
        // The settings the pod was started with: the same cache as its ADD.
        Cni::new(&settings.network).del(container_id, ifname)?;
        netns::remove(netns)?;
    }
    Ok(())
}

/// The pod's `hostPort`s for portmap (containerd's: only those with a host
/// port; sidecars' too). None on hostNetwork: the ports are the node's.
pub fn port_mappings(pod: &Pod) -> Vec<PortMapping> {
    if pod.host.network {
        return Vec::new();
    }
    let containers = pod
        .init_containers
        .iter()
        .filter(|c| c.is_sidecar())
        .chain(&pod.containers);
    containers
        .flat_map(|c| &c.ports)
        .filter_map(|port| {
            Some(PortMapping {
                host_port: port.host_port?,
                container_port: port.container_port,
                protocol: match port.protocol {
                    Protocol::Tcp => cni::Protocol::Tcp,
                    Protocol::Udp => cni::Protocol::Udp,
                    Protocol::Sctp => cni::Protocol::Sctp,
                },
                host_ip: port.host_ip.clone(),
            })
        })
        .collect()
}

/// The pod's /etc files' contents, and the warnings the kubelet would give
/// as events (a DNS fallback, limits exceeded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcFiles {
    pub hosts: Vec<u8>,
    pub hostname: String,
    pub resolv_conf: String,
    pub warnings: Vec<String>,
}

/// /etc/hosts, /etc/hostname and /etc/resolv.conf for `pod` with `pod_ips`.
pub fn etc_files(pod: &Pod, settings: &Settings, pod_ips: &[IpAddr]) -> EtcFiles {
    let mut warnings = Vec::new();
    let aliases = &pod.host_aliases;
    let hosts = if pod.host.network {
        hosts::host_network_from(Path::new(hosts::NODE_HOSTS), aliases).unwrap_or_else(|e| {
            warnings.push(format!("the node's hosts file: {e}"));
            hosts::managed(&[], &pod.hostname, None, aliases).into_bytes()
        })
    } else {
        let loopback = [LOOPBACK_HOST.parse().expect("an address")];
        let ips = if pod_ips.is_empty() {
            &loopback[..]
        } else {
            pod_ips
        };
        let domain = hosts::pod_domain(
            pod.dns.subdomain.as_deref(),
            &pod.namespace,
            &settings.network.cluster_domain,
        );
        hosts::managed(ips, &pod.hostname, domain.as_deref(), aliases).into_bytes()
    };
    let resolv_conf = match dns::resolv_conf(
        &settings.network,
        pod.dns.policy,
        pod.host.network,
        &pod.namespace,
        pod.dns.config.as_ref(),
    ) {
        Ok(dns) => {
            warnings.extend(dns.warnings);
            dns.resolv.render()
        }
        Err(e) => {
            // As before peapod followed dnsPolicy: the pod runs, without DNS.
            warnings.push(format!("the node's resolver configuration: {e}"));
            String::new()
        }
    };
    EtcFiles {
        hosts,
        hostname: format!("{}\n", pod.hostname),
        resolv_conf,
        warnings,
    }
}

/// Writes the pod's /etc files into its folder (created if needed).
pub fn write_etc_files(folder: &PodFolder, files: &EtcFiles) -> Result<(), NetworkError> {
    let write = |path: PathBuf, bytes: &[u8]| {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|source| NetworkError::Write {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        fs::write(&path, bytes).map_err(|source| NetworkError::Write { path, source })
    };
    write(folder.hosts(), &files.hosts)?;
    write(folder.hostname(), files.hostname.as_bytes())?;
    write(folder.resolv_conf(), files.resolv_conf.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::dns::DnsPolicy;
    use crate::pod::admission;

    fn pod(spec: &str) -> Pod {
        let text = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: web, namespace: shop, uid: 0b7d3c55-8f4e-4a8e-9d7e-2f1c7a6b9e10}}\nspec: {spec}\n"
        );
        admission::parse(&text, "web.yaml").unwrap().pod
    }

    fn settings(dir: &Path) -> Settings {
        let resolv = dir.join("resolv.conf");
        fs::write(&resolv, "nameserver 192.0.2.53\nsearch corp.example\n").unwrap();
        let mut settings = Settings::default();
        settings.network.resolv_conf = Some(resolv);
        settings.network.cni_conf_dir = dir.join("net.d");
        settings.network.netns_dir = dir.join("netns");
        settings.network.cni_cache_dir = dir.join("cache");
        settings
    }

    #[test]
    fn ids_are_the_uid_or_its_hash() {
        let mut p = pod("{containers: [{name: a, image: i}]}");
        assert_eq!(attachment_id(&p), "0b7d3c55-8f4e-4a8e-9d7e-2f1c7a6b9e10");
        p.uid = "not/an id".into();
        let id = attachment_id(&p);
        assert_eq!(id.len(), 32);
        assert!(cni::config::check_id(&id).is_ok());
    }

    #[test]
    fn host_ports_become_port_mappings() {
        let p = pod(
            "{initContainers: [{name: side, image: i, restartPolicy: Always, ports: [{containerPort: 9000, hostPort: 9000, protocol: UDP}]}, {name: init, image: i, ports: [{containerPort: 1, hostPort: 1}]}], containers: [{name: a, image: i, ports: [{containerPort: 80, hostPort: 8080, hostIP: 127.0.0.1}, {containerPort: 81}]}]}",
        );
        let json = serde_json::to_value(port_mappings(&p)).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"hostPort": 9000, "containerPort": 9000, "protocol": "udp"},
                {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"},
            ])
        );
        let host = pod(
            "{hostNetwork: true, containers: [{name: a, image: i, ports: [{containerPort: 80}]}]}",
        );
        assert!(port_mappings(&host).is_empty());
    }

    /// The kubelet's files for each network mode: managed hosts with the pod
    /// IPs (its FQDN first with a subdomain), the node's hosts file for
    /// hostNetwork, and resolv.conf by dnsPolicy.
    #[test]
    fn etc_files_follow_the_network_mode() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        let p = pod("{subdomain: db, hostAliases: [{ip: 10.1.2.3, hostnames: [foo]}], containers: [{name: a, image: i}]}");
        let ips: Vec<IpAddr> = vec!["10.86.0.12".parse().unwrap()];
        let files = etc_files(&p, &s, &ips);
        let hosts = String::from_utf8(files.hosts).unwrap();
        assert!(hosts.starts_with(hosts::MANAGED_HEADER), "{hosts}");
        assert!(
            hosts.contains("10.86.0.12\tweb.db.shop.svc.cluster.local\tweb\n"),
            "{hosts}"
        );
        assert!(hosts.ends_with("10.1.2.3\tfoo\n"), "{hosts}");
        assert_eq!(files.hostname, "web\n");
        // ClusterFirst without cluster DNS: Default, with the kubelet's warning.
        assert_eq!(
            files.resolv_conf,
            "search corp.example\nnameserver 192.0.2.53\n"
        );
        assert_eq!(files.warnings.len(), 1, "{:?}", files.warnings);

        s.network.cluster_dns = vec!["10.96.0.10".parse().unwrap()];
        let files = etc_files(&p, &s, &[]);
        let hosts = String::from_utf8(files.hosts).unwrap();
        assert!(
            hosts.contains("127.0.1.1\tweb.db.shop.svc.cluster.local\tweb\n"),
            "{hosts}"
        );
        assert!(
            files
                .resolv_conf
                .starts_with("search shop.svc.cluster.local"),
            "{}",
            files.resolv_conf
        );
        assert!(files.warnings.is_empty());

        let host = pod("{hostNetwork: true, dnsPolicy: ClusterFirstWithHostNet, containers: [{name: a, image: i}]}");
        assert_eq!(host.dns.policy, DnsPolicy::ClusterFirstWithHostNet);
        let files = etc_files(&host, &s, &[]);
        assert!(files
            .hosts
            .starts_with(hosts::HOST_NETWORK_HEADER.as_bytes()));
        assert!(files.resolv_conf.contains("nameserver 10.96.0.10"));
        assert_eq!(files.hostname, format!("{}\n", node::host_name()));

        s.network.resolv_conf = Some(dir.path().join("missing"));
        let files = etc_files(&p, &s, &ips);
        assert_eq!(files.resolv_conf, "");
        assert!(
            files.warnings[0].contains("missing"),
            "{:?}",
            files.warnings
        );
    }

    /// Without a CNI config the pod has loopback only; with a broken one the
    /// error names the file. Neither leaves a namespace or a pin.
    #[test]
    fn no_config_is_loopback_only_and_a_broken_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let folder = PodFolder::new(dir.path().join("pod"));
        fs::create_dir_all(folder.dir()).unwrap();
        let p = pod("{containers: [{name: a, image: i}]}");
        let network = setup(&p, &folder, &s).unwrap();
        assert_eq!(
            network.record.describe(),
            format!(
                "loopback only: no CNI network config in {}",
                s.network.cni_conf_dir.display()
            )
        );
        assert_eq!(record(&folder), Some(network.record.clone()));
        release(&folder, &s).unwrap();
        release(&folder, &s).unwrap();
        assert_eq!(record(&folder), Some(network.record));
        fs::remove_file(folder.network_file()).unwrap();

        fs::create_dir_all(&s.network.cni_conf_dir).unwrap();
        let file = s.network.cni_conf_dir.join("10-x.conflist");
        fs::write(&file, "{\"cniVersion\": ").unwrap();
        let err = setup(&p, &folder, &s).unwrap_err().to_string();
        assert!(err.starts_with(&file.display().to_string()), "{err}");
        assert!(record(&folder).is_none());
        assert!(!s.network.netns_dir.join(attachment_id(&p)).exists());

        let host = pod("{hostNetwork: true, containers: [{name: a, image: i}]}");
        let network = setup(&host, &folder, &s).unwrap();
        assert_eq!(network.record, NetworkRecord::Host);
        assert_eq!(network.pod_ips, node::node_ips());
        release(&folder, &s).unwrap();
    }
}
