//! A pod's network, as the kubelet and containerd/CRI-O give it: a pinned
//! network namespace, CNI plugins that put the pod on a network, and the
//! `/etc/hosts` and `/etc/resolv.conf` its containers see.
//!
//! The pod engine calls these parts in this order (all blocking, all from the
//! engine's single thread; nothing here starts a thread):
//!
//! - setup of a pod with its own network: [`netns::create`] (a namespace with
//!   `lo` up, pinned at `<netns dir>/<name>`) → the sandbox container joins it
//!   by path (`linux.namespaces[].path`) → [`cni::Cni::add`] (CNI ADD; on
//!   failure it undoes itself) → the pod's IPs from
//!   [`cni::Attachment::pod_ips`] go to `status.podIP(s)` and the Downward API
//!   → [`hosts::managed`] and [`dns::resolv_conf`] write the pod's files.
//! - teardown: [`cni::Cni::del`] (idempotent, from the cache) → [`netns::remove`]
//!   (idempotent).
//! - adopting a running pod: [`cni::Cni::attachment`] (its IPs from the cache)
//!   and [`cni::Cni::check`].
//! - a `hostNetwork` pod has no namespace and no CNI: [`hosts::host_network`]
//!   and [`dns::resolv_conf`] with `host_network` set; its IPs are the
//!   node's ([`node::node_ips`], also every pod's `status.hostIP(s)`).

pub mod cni;
pub mod dns;
pub mod hosts;
pub mod netns;
pub mod node;
pub mod settings;

pub use settings::NetworkSettings;
