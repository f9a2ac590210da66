//! CNI (spec 1.0/1.1, and 0.3.x/0.4.0 configs) for pods with their own
//! network: ADD, CHECK and DEL of a pod's attachment, run as libcni runs the
//! plugins (chaining with `prevResult`, `runtimeConfig` from the capabilities
//! plugins declare, DEL in reverse order with the cached result), plus GC and
//! STATUS for 1.1 networks.
//!
//! Near 800 lines on purpose: the operations share one invocation context
//! (environment, runtimeConfig, prevResult chaining), and the spec's rules
//! for each verb read best side by side; parsing, the cache and plugin
//! execution are apart in their own files.

pub mod cache;
pub mod config;
pub mod exec;
pub mod result;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Map, Value};

use self::cache::{Cache, Record};
use self::config::{NetworkList, PluginConf, Version};
use self::exec::{ExecError, Invocation};
pub use self::result::CniResult;
use super::NetworkSettings;

/// The pod's interface, as the kubelet names it.
pub const DEFAULT_IFNAME: &str = "eth0";

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("no network config found in {} (*.conflist, *.conf or *.json)", dir.display())]
    NoConfig { dir: PathBuf },
    #[error("{}: {problem}", file.display())]
    Config { file: PathBuf, problem: String },
    #[error("{}: plugin {plugin:?} not found in {dirs}", file.display())]
    PluginNotFound {
        file: PathBuf,
        plugin: String,
        dirs: String,
    },
    #[error("{}: plugin {plugin} failed ({command}): {source}", file.display())]
    Plugin {
        file: PathBuf,
        plugin: String,
        command: &'static str,
        // Boxed: a plugin's error result would bloat every Result.
        #[source]
        source: Box<ExecError>,
    },
    #[error("{}: plugin {plugin} ({command}) answered {problem}", file.display())]
    BadAnswer {
        file: PathBuf,
        plugin: String,
        command: &'static str,
        problem: String,
    },
    #[error("{field}: {value:?}: {problem}")]
    Invalid {
        field: &'static str,
        value: String,
        problem: &'static str,
    },
    #[error("{container_id} {ifname}: already attached to network {network} (DEL it first)")]
    AlreadyAttached {
        container_id: String,
        ifname: String,
        network: String,
    },
    #[error("{container_id} {ifname}: no network attachment")]
    NotAttached {
        container_id: String,
        ifname: String,
    },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {problem}", path.display())]
    Cache { path: PathBuf, problem: String },
    #[error("{error}; undoing the ADD failed too: {undo}")]
    Undo {
        error: Box<CniError>,
        undo: Box<CniError>,
    },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Several(Vec<CniError>),
}

impl CniError {
    pub(crate) fn io(what: &'static str, path: &Path, source: std::io::Error) -> Self {
        CniError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Who the attachment is for: CNI_ARGS as containerd's CRI sends them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

/// A `hostPort` of the pod, for the `portMappings` capability (portmap).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
    #[serde(rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
}

/// What the engine asks for: one pod's interface in one network namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct AttachRequest {
    /// CNI_CONTAINERID: the sandbox's id.
    pub container_id: String,
    /// CNI_NETNS: the pinned namespace.
    pub netns: PathBuf,
    pub ifname: String,
    pub pod: PodRef,
    /// Only mappings with a host port (containerd drops the others).
    pub port_mappings: Vec<PortMapping>,
    /// More capability arguments by name (`io.kubernetes.cri.pod-annotations`,
    /// `cgroupPath`, `bandwidth`, ...); a plugin gets those it declares.
    pub capabilities: Map<String, Value>,
}

impl AttachRequest {
    pub fn new(container_id: &str, netns: &Path, pod: PodRef) -> Self {
        Self {
            container_id: container_id.to_string(),
            netns: netns.to_path_buf(),
            ifname: DEFAULT_IFNAME.to_string(),
            pod,
            port_mappings: Vec::new(),
            capabilities: Map::new(),
        }
    }

    fn validate(&self) -> Result<(), CniError> {
        let invalid = |field, value: &str, problem| CniError::Invalid {
            field,
            value: value.to_string(),
            problem,
        };
        config::check_id(&self.container_id)
            .map_err(|p| invalid("container id", &self.container_id, p))?;
        check_ifname(&self.ifname).map_err(|p| invalid("interface name", &self.ifname, p))?;
        if !self.netns.is_absolute() {
            return Err(invalid(
                "netns",
                &self.netns.display().to_string(),
                "must be an absolute path",
            ));
        }
        for (field, value) in [
            ("K8S_POD_NAMESPACE", &self.pod.namespace),
            ("K8S_POD_NAME", &self.pod.name),
            ("K8S_POD_UID", &self.pod.uid),
        ] {
            if value.contains([';', '=']) || value.chars().any(char::is_control) {
                return Err(invalid(
                    field,
                    value,
                    "must not hold ';', '=' or control characters",
                ));
            }
        }
        Ok(())
    }

    /// CNI_ARGS in containerd's keys (in a fixed order).
    fn cni_args(&self) -> String {
        format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
            self.pod.namespace, self.pod.name, self.container_id, self.pod.uid
        )
    }

    fn capability_args(&self) -> Map<String, Value> {
        let mut args = self.capabilities.clone();
        if !self.port_mappings.is_empty() {
            args.insert("portMappings".into(), json!(self.port_mappings));
        }
        args
    }
}

/// libcni's ValidateInterfaceName.
fn check_ifname(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("must not be empty")
    } else if name.len() > 15 {
        Err("must be at most 15 bytes (IFNAMSIZ)")
    } else if name == "." || name == ".." {
        Err("is not an interface name")
    } else if name.contains(['/', ':']) || name.chars().any(char::is_whitespace) {
        Err("must not hold '/', ':' or spaces")
    } else {
        Ok(())
    }
}

/// A pod's interface as ADD left it (or as the cache remembers it).
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
    pub netns: PathBuf,
    pub network: String,
    pub config_file: PathBuf,
    pub cni_version: String,
    pub result: CniResult,
}

impl Attachment {
    /// `status.podIP` is the first, `status.podIPs` all of them.
    pub fn pod_ips(&self) -> Vec<IpAddr> {
        self.result.pod_ips()
    }

    fn from_record(record: &Record, value: &Value, cache: &Cache) -> Result<Self, CniError> {
        let result = CniResult::parse(value).map_err(|problem| CniError::Cache {
            path: cache.path(&record.container_id, &record.if_name),
            problem,
        })?;
        Ok(Self {
            container_id: record.container_id.clone(),
            ifname: record.if_name.clone(),
            netns: record.netns.clone().into(),
            network: record.network_name.clone(),
            config_file: record.config_file.clone(),
            cni_version: record.cni_version.clone(),
            result,
        })
    }
}

/// The CNI side of the engine; every call blocks until the plugins are done.
pub struct Cni {
    conf_dir: PathBuf,
    bin_dirs: Vec<PathBuf>,
    cache: Cache,
    timeout: Duration,
}

/// The network as the cache keeps it: enough to run the same plugins again.
struct Network<'a> {
    file: &'a Path,
    name: &'a str,
    version: Version,
    plugins: Vec<(String, &'a Map<String, Value>)>,
}

impl Cni {
    pub fn new(settings: &NetworkSettings) -> Self {
        Self {
            conf_dir: settings.cni_conf_dir.clone(),
            bin_dirs: settings.cni_bin_dirs.clone(),
            cache: Cache::new(&settings.cni_cache_dir),
            timeout: settings.cni_timeout,
        }
    }

    /// The network pods get: the first config file of the config folder.
    pub fn network(&self) -> Result<NetworkList, CniError> {
        config::load_default(&self.conf_dir)
    }

    /// Where a plugin binary is: the first plugin folder that has it.
    pub fn find_plugin(&self, plugin: &str) -> Option<PathBuf> {
        self.bin_dirs
            .iter()
            .map(|dir| dir.join(plugin))
            .find(|path| path.metadata().is_ok_and(|m| m.is_file()))
    }

    fn find_plugins<'a>(
        &self,
        file: &Path,
        types: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<PathBuf>, CniError> {
        types
            .into_iter()
            .map(|plugin| {
                self.find_plugin(plugin)
                    .ok_or_else(|| CniError::PluginNotFound {
                        file: file.to_path_buf(),
                        plugin: plugin.to_string(),
                        dirs: self.path_list(", "),
                    })
            })
            .collect()
    }

    fn path_list(&self, separator: &str) -> String {
        let dirs: Vec<String> = self
            .bin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        dirs.join(separator)
    }

    /// CNI ADD of the default network. On success the result is cached for
    /// DEL and CHECK; on failure what was done is undone (DEL of the whole
    /// list, as the spec asks after a failed ADD) and nothing is left.
    pub fn add(&self, request: &AttachRequest) -> Result<Attachment, CniError> {
        request.validate()?;
        let list = self.network()?;
        self.add_list(&list, request)
    }

    /// CNI ADD of a given network list.
    pub fn add_list(
        &self,
        list: &NetworkList,
        request: &AttachRequest,
    ) -> Result<Attachment, CniError> {
        request.validate()?;
        let _lock = self.cache.lock(false)?;
        if let Some(record) = self.cache.read(&request.container_id, &request.ifname)? {
            return Err(CniError::AlreadyAttached {
                container_id: request.container_id.clone(),
                ifname: request.ifname.clone(),
                network: record.network_name,
            });
        }
        let (paths, version) = self.plan(list)?;
        let record = Record {
            kind: cache::KIND.into(),
            container_id: request.container_id.clone(),
            if_name: request.ifname.clone(),
            netns: request.netns.display().to_string(),
            network_name: list.name.clone(),
            config_file: list.file.clone(),
            cni_version: version.to_string(),
            disable_check: list.disable_check,
            disable_gc: list.disable_gc,
            plugins: list.plugins.iter().map(|p| p.conf.clone()).collect(),
            cni_args: request.cni_args(),
            capability_args: request.capability_args(),
            result: None,
            finished: false,
        };
        self.cache.write(&record)?;
        let network = network_of(&record, version);
        let mut previous: Option<Value> = None;
        for (index, path) in paths.iter().enumerate() {
            match self.run(&network, &record, index, path, "ADD", previous.as_ref()) {
                Ok(answer) => previous = Some(answer),
                Err(error) => return Err(self.undo(&network, &record, previous.as_ref(), error)),
            }
        }
        let value = previous.expect("a list has plugins");
        let result = match CniResult::parse(&value) {
            Ok(result) => result,
            Err(problem) => {
                let last = &network.plugins[network.plugins.len() - 1].0;
                let error = CniError::BadAnswer {
                    file: list.file.clone(),
                    plugin: last.clone(),
                    command: "ADD",
                    problem: format!("a malformed result: {problem}"),
                };
                return Err(self.undo(&network, &record, Some(&value), error));
            }
        };
        let mut done = record.clone();
        done.result = Some(value.clone());
        done.finished = true;
        if let Err(error) = self.cache.write(&done) {
            return Err(self.undo(&network, &record, Some(&value), error));
        }
        Ok(Attachment {
            container_id: request.container_id.clone(),
            ifname: request.ifname.clone(),
            netns: request.netns.clone(),
            network: list.name.clone(),
            config_file: list.file.clone(),
            cni_version: version.to_string(),
            result,
        })
    }

    /// After a failed ADD: DEL every plugin (they accept what is not there)
    /// and forget the attachment, or keep the record if that fails too, so a
    /// later DEL or GC can finish the job.
    fn undo(
        &self,
        network: &Network,
        record: &Record,
        last: Option<&Value>,
        error: CniError,
    ) -> CniError {
        let mut record = record.clone();
        record.result = last.cloned();
        match self.del_plugins(network, &record) {
            Ok(()) => match self.cache.remove(&record.container_id, &record.if_name) {
                Ok(()) => error,
                Err(undo) => CniError::Undo {
                    error: Box::new(error),
                    undo: Box::new(undo),
                },
            },
            Err(undo) => {
                let _ = self.cache.write(&record);
                CniError::Undo {
                    error: Box::new(error),
                    undo: Box::new(undo),
                }
            }
        }
    }

    /// CNI DEL, from the cache: the plugins of the ADD in reverse order, each
    /// given the ADD's result. Nothing cached means nothing to delete (the
    /// record is written before an ADD starts): success, as is a second DEL.
    pub fn del(&self, container_id: &str, ifname: &str) -> Result<(), CniError> {
        let _lock = self.cache.lock(false)?;
        match self.cache.read(container_id, ifname)? {
            None => Ok(()),
            Some(record) => self.del_record(&record),
        }
    }

    fn del_record(&self, record: &Record) -> Result<(), CniError> {
        let version = record_version(record, &self.cache)?;
        let network = network_of(record, version);
        self.del_plugins(&network, record)?;
        self.cache.remove(&record.container_id, &record.if_name)
    }

    fn del_plugins(&self, network: &Network, record: &Record) -> Result<(), CniError> {
        let paths = self.find_plugins(network.file, network.types())?;
        // The ADD's result goes to every DEL from 0.4.0 on (libcni).
        let previous = record
            .result
            .as_ref()
            .filter(|_| network.version.has_check());
        for (index, path) in paths.iter().enumerate().rev() {
            self.run(network, record, index, path, "DEL", previous)?;
        }
        Ok(())
    }

    /// CNI CHECK of a cached attachment (for a pod being adopted): every plugin
    /// in order, given the ADD's result. Networks that disable CHECK, and
    /// versions before 0.4.0 (which have no CHECK), pass.
    pub fn check(&self, container_id: &str, ifname: &str) -> Result<(), CniError> {
        let _lock = self.cache.lock(false)?;
        let record =
            self.cache
                .read(container_id, ifname)?
                .ok_or_else(|| CniError::NotAttached {
                    container_id: container_id.to_string(),
                    ifname: ifname.to_string(),
                })?;
        let version = record_version(&record, &self.cache)?;
        if record.disable_check || !version.has_check() {
            return Ok(());
        }
        let Some(previous) = record.result.as_ref().filter(|_| record.finished) else {
            return Err(CniError::Cache {
                path: self.cache.path(container_id, ifname),
                problem: "its ADD never finished".into(),
            });
        };
        let network = network_of(&record, version);
        let paths = self.find_plugins(network.file, network.types())?;
        for (index, path) in paths.iter().enumerate() {
            self.run(&network, &record, index, path, "CHECK", Some(previous))?;
        }
        Ok(())
    }

    /// The cached attachment of a pod (its IPs for a pod being adopted), if
    /// its ADD finished.
    pub fn attachment(
        &self,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<Attachment>, CniError> {
        let Some(record) = self.cache.read(container_id, ifname)? else {
            return Ok(None);
        };
        match &record.result {
            Some(value) if record.finished => {
                Attachment::from_record(&record, value, &self.cache).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Garbage collection: DEL of every cached attachment not in `valid`
    /// (`(container id, ifname)` pairs of the pods that still exist), then,
    /// for a 1.1 network, the plugins' own GC with the valid attachments.
    /// Runs alone (an exclusive lock against ADD/DEL/CHECK); continues past
    /// errors and reports them all.
    pub fn gc(&self, valid: &[(&str, &str)]) -> Result<(), CniError> {
        let _lock = self.cache.lock(true)?;
        let mut errors = Vec::new();
        for record in self.cache.list()? {
            let record = match record {
                Ok(record) => record,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let id = (record.container_id.as_str(), record.if_name.as_str());
            if record.disable_gc || valid.contains(&id) {
                continue;
            }
            if let Err(e) = self.del_record(&record) {
                errors.push(e);
            }
        }
        match self.network() {
            Err(CniError::NoConfig { .. }) => {}
            Err(e) => errors.push(e),
            Ok(list) if list.disable_gc => {}
            Ok(list) => {
                if let Err(e) = self.gc_plugins(&list, valid) {
                    errors.push(e);
                }
            }
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(CniError::Several(errors)),
        }
    }

    fn gc_plugins(&self, list: &NetworkList, valid: &[(&str, &str)]) -> Result<(), CniError> {
        let (paths, version) = self.plan(list)?;
        if !version.has_gc() {
            return Ok(());
        }
        let attachments: Vec<Value> = valid
            .iter()
            .map(|(id, ifname)| json!({"containerID": id, "ifname": ifname}))
            .collect();
        let mut errors = Vec::new();
        for (plugin, path) in list.plugins.iter().zip(&paths) {
            let mut conf = plugin.conf.clone();
            conf.insert("name".into(), json!(list.name));
            conf.insert("cniVersion".into(), json!(version.to_string()));
            conf.insert("cni.dev/valid-attachments".into(), json!(attachments));
            // libcni also sends the key the 1.1.0 spec first printed (#1101).
            conf.insert("cni.dev/attachments".into(), json!(attachments));
            let call = Invocation {
                command: "GC",
                path: &self.path_list(":"),
                ..Default::default()
            };
            if let Err(e) = self.exec(&list.file, &plugin.plugin_type, path, &call, &conf) {
                errors.push(e);
            }
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(CniError::Several(errors)),
        }
    }

    /// Whether the network can take pods: a config, its plugins, and for a
    /// 1.1 network each plugin's STATUS.
    pub fn status(&self) -> Result<(), CniError> {
        let list = self.network()?;
        let (paths, version) = self.plan(&list)?;
        if !version.has_gc() {
            return Ok(());
        }
        for (plugin, path) in list.plugins.iter().zip(&paths) {
            let mut conf = plugin.conf.clone();
            conf.insert("name".into(), json!(list.name));
            conf.insert("cniVersion".into(), json!(version.to_string()));
            let call = Invocation {
                command: "STATUS",
                path: &self.path_list(":"),
                ..Default::default()
            };
            self.exec(&list.file, &plugin.plugin_type, path, &call, &conf)?;
        }
        Ok(())
    }

    /// Where the list's plugins are and which version to speak with them.
    fn plan(&self, list: &NetworkList) -> Result<(Vec<PathBuf>, Version), CniError> {
        let paths = self.find_plugins(&list.file, list.types())?;
        let version = self.choose_version(list, &paths)?;
        Ok((paths, version))
    }

    /// The version to speak: the config's newest that every plugin supports.
    /// With one candidate there is nothing to choose (a plugin that does not
    /// support it says so itself); with `cniVersions`, each plugin's VERSION
    /// narrows the choice (the spec allows runtimes to consider it).
    fn choose_version(&self, list: &NetworkList, paths: &[PathBuf]) -> Result<Version, CniError> {
        if let [only] = list.versions[..] {
            return Ok(only);
        }
        let mut allowed = list.versions.clone();
        let mut asked: BTreeMap<&Path, Vec<Version>> = BTreeMap::new();
        for (plugin, path) in list.plugins.iter().zip(paths) {
            if !asked.contains_key(path.as_path()) {
                let supported = self.plugin_versions(list, plugin, path)?;
                asked.insert(path, supported);
            }
            let supported = &asked[path.as_path()];
            allowed.retain(|v| supported.contains(v));
            if allowed.is_empty() {
                let theirs: Vec<String> = supported.iter().map(Version::to_string).collect();
                let ours: Vec<String> = list.versions.iter().map(Version::to_string).collect();
                return Err(CniError::Config {
                    file: list.file.clone(),
                    problem: format!(
                        "no CNI version in common: the config allows {}, plugin {} supports {}",
                        ours.join(", "),
                        plugin.plugin_type,
                        theirs.join(", ")
                    ),
                });
            }
        }
        Ok(allowed[0])
    }

    fn plugin_versions(
        &self,
        list: &NetworkList,
        plugin: &PluginConf,
        path: &Path,
    ) -> Result<Vec<Version>, CniError> {
        let call = Invocation {
            command: "VERSION",
            args: "IgnoreUnknown=1",
            path: &self.path_list(":"),
            ..Default::default()
        };
        let mut conf = Map::new();
        conf.insert("cniVersion".into(), json!(list.versions[0].to_string()));
        let answer = self.exec(&list.file, &plugin.plugin_type, path, &call, &conf)?;
        let bad = |problem: String| CniError::BadAnswer {
            file: list.file.clone(),
            plugin: plugin.plugin_type.clone(),
            command: "VERSION",
            problem,
        };
        let answer: Value =
            serde_json::from_slice(&answer).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let supported = answer
            .get("supportedVersions")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no supportedVersions".into()))?;
        Ok(supported
            .iter()
            .filter_map(|v| v.as_str().and_then(Version::parse))
            .collect())
    }

    /// One ADD/DEL/CHECK call of plugin `index` of the network: its config with
    /// the name, version, previous result and runtimeConfig (libcni's
    /// buildOneConfig), the attachment's parameters in the environment. ADD's
    /// answer must be a result object.
    fn run(
        &self,
        network: &Network,
        record: &Record,
        index: usize,
        path: &Path,
        command: &'static str,
        previous: Option<&Value>,
    ) -> Result<Value, CniError> {
        let (plugin_type, conf) = &network.plugins[index];
        let mut conf = (*conf).clone();
        conf.insert("name".into(), json!(network.name));
        conf.insert("cniVersion".into(), json!(network.version.to_string()));
        if let Some(previous) = previous {
            conf.insert("prevResult".into(), previous.clone());
        }
        let runtime_config: Map<String, Value> = record
            .capability_args
            .iter()
            .filter(|(name, _)| config::declares(&conf, name))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        if !runtime_config.is_empty() {
            conf.insert("runtimeConfig".into(), Value::Object(runtime_config));
        }
        let bin_path = self.path_list(":");
        let call = Invocation {
            command,
            container_id: &record.container_id,
            netns: &record.netns,
            ifname: &record.if_name,
            args: &record.cni_args,
            path: &bin_path,
        };
        let answer = self.exec(network.file, plugin_type, path, &call, &conf)?;
        if command != "ADD" {
            return Ok(Value::Null);
        }
        let bad = |problem: String| CniError::BadAnswer {
            file: network.file.to_path_buf(),
            plugin: plugin_type.clone(),
            command,
            problem,
        };
        match serde_json::from_slice(&answer) {
            Ok(Value::Object(result)) => Ok(Value::Object(result)),
            Ok(_) => Err(bad("something other than a result object".into())),
            Err(_) if answer.iter().all(u8::is_ascii_whitespace) => Err(bad("nothing".into())),
            Err(e) => Err(bad(format!("invalid JSON: {e}"))),
        }
    }

    fn exec(
        &self,
        file: &Path,
        plugin: &str,
        path: &Path,
        call: &Invocation,
        conf: &Map<String, Value>,
    ) -> Result<Vec<u8>, CniError> {
        let request = serde_json::to_vec(conf).expect("a JSON object serializes");
        tracing::debug!(
            "CNI {} {} {} {}",
            call.command,
            plugin,
            call.container_id,
            call.ifname
        );
        exec::run(path, call, &request, self.timeout).map_err(|source| CniError::Plugin {
            file: file.to_path_buf(),
            plugin: plugin.to_string(),
            command: call.command,
            source: Box::new(source),
        })
    }
}

impl Network<'_> {
    fn types(&self) -> impl Iterator<Item = &str> {
        self.plugins.iter().map(|(t, _)| t.as_str())
    }
}

fn network_of(record: &Record, version: Version) -> Network<'_> {
    Network {
        file: &record.config_file,
        name: &record.network_name,
        version,
        plugins: record
            .plugins
            .iter()
            .map(|conf| {
                let plugin_type = conf.get("type").and_then(Value::as_str).unwrap_or_default();
                (plugin_type.to_string(), conf)
            })
            .collect(),
    }
}

fn record_version(record: &Record, cache: &Cache) -> Result<Version, CniError> {
    Version::parse(&record.cni_version).ok_or_else(|| CniError::Cache {
        path: cache.path(&record.container_id, &record.if_name),
        problem: format!("cniVersion {:?}: not a version", record.cni_version),
    })
}

#[cfg(test)]
mod tests;
