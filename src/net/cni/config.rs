//! The network configuration: the first `*.conf`, `*.conflist` or `*.json` of
//! the config folder in name order (libcni's `ConfFiles` + sort, as containerd's
//! go-cni picks its default network), a single plugin `.conf` made a list of
//! one, and the CNI version to speak chosen from `cniVersion`/`cniVersions`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::CniError;

/// The spec versions peapod speaks (0.1/0.2 results have another shape).
pub const SUPPORTED_VERSIONS: [Version; 5] = [
    Version(0, 3, 0),
    Version(0, 3, 1),
    Version(0, 4, 0),
    Version(1, 0, 0),
    Version(1, 1, 0),
];
/// The newest spec version peapod implements; newer entries of `cniVersions`
/// are skipped, as libcni skips versions newer than its own.
pub const CURRENT: Version = Version(1, 1, 0);

/// A CNI spec version, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('.').map(|p| {
            let digits = !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
            digits.then(|| p.parse::<u32>().ok()).flatten()
        });
        let v = Version(parts.next()??, parts.next()??, parts.next()??);
        parts.next().is_none().then_some(v)
    }

    /// CHECK, and a `prevResult` on DEL, came with 0.4.0.
    pub fn has_check(self) -> bool {
        self >= Version(0, 4, 0)
    }

    /// GC and STATUS came with 1.1.0.
    pub fn has_gc(self) -> bool {
        self >= Version(1, 1, 0)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// One plugin of the list: its `type` and its configuration object, passed on
/// unchanged but for the keys the runtime adds.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConf {
    pub plugin_type: String,
    pub conf: Map<String, Value>,
}

impl PluginConf {
    fn parse(conf: Map<String, Value>, at: &str) -> Result<Self, String> {
        let plugin_type = match conf.get("type") {
            Some(Value::String(t)) if !t.is_empty() => t.clone(),
            Some(Value::String(_)) | None => return Err(format!("{at}type: required")),
            Some(_) => return Err(format!("{at}type: must be a string")),
        };
        if plugin_type.contains('/') || plugin_type == "." || plugin_type == ".." {
            return Err(format!(
                "{at}type: {plugin_type:?}: must be a file name, not a path"
            ));
        }
        if let Some(caps) = conf.get("capabilities") {
            if !caps
                .as_object()
                .is_some_and(|m| m.values().all(Value::is_boolean))
            {
                return Err(format!(
                    "{at}capabilities: must be an object of true/false values"
                ));
            }
        }
        Ok(Self { plugin_type, conf })
    }

    /// Whether this plugin declares a capability (`"capabilities": {"portMappings": true}`).
    pub fn has_capability(&self, name: &str) -> bool {
        declares(&self.conf, name)
    }
}

/// Whether a plugin configuration declares capability `name` true.
pub fn declares(conf: &Map<String, Value>, name: &str) -> bool {
    conf.get("capabilities")
        .and_then(|caps| caps.get(name))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// A network configuration list, as loaded from one file.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkList {
    pub file: PathBuf,
    pub name: String,
    /// The versions the config allows that peapod speaks, newest first (never
    /// empty); which of them is used may depend on the plugins (see `Cni`).
    pub versions: Vec<Version>,
    pub disable_check: bool,
    pub disable_gc: bool,
    pub plugins: Vec<PluginConf>,
}

impl NetworkList {
    /// The plugin types, in order.
    pub fn types(&self) -> Vec<&str> {
        self.plugins
            .iter()
            .map(|p| p.plugin_type.as_str())
            .collect()
    }
}

/// The network config files of `dir` in libcni's order: the names ending in
/// `.conf`, `.conflist` or `.json`, sorted.
pub fn config_files(dir: &Path) -> Result<Vec<PathBuf>, CniError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(CniError::io("read", dir, source)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| CniError::io("read", dir, source))?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        let ext = path.extension().and_then(|e| e.to_str());
        if matches!(ext, Some("conf" | "conflist" | "json")) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The default network: the first config file of `dir`. A broken first file is
/// an error (as in containerd), not skipped.
pub fn load_default(dir: &Path) -> Result<NetworkList, CniError> {
    match config_files(dir)?.first() {
        Some(file) => load_file(file),
        None => Err(CniError::NoConfig {
            dir: dir.to_path_buf(),
        }),
    }
}

/// One config file: a `.conflist` is a list, a `.conf`/`.json` one plugin.
pub fn load_file(file: &Path) -> Result<NetworkList, CniError> {
    let bad = |problem: String| CniError::Config {
        file: file.to_path_buf(),
        problem,
    };
    let bytes = std::fs::read(file).map_err(|source| CniError::io("read", file, source))?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    let Value::Object(object) = value else {
        return Err(bad("not a JSON object".into()));
    };
    if file.extension().is_some_and(|e| e == "conflist") {
        parse_list(object, file.parent().unwrap_or(Path::new("/"))).map_err(bad)
    } else {
        parse_single(object).map_err(bad)
    }
    .map(|mut list| {
        list.file = file.to_path_buf();
        list
    })
}

pub(crate) fn parse_list(
    mut object: Map<String, Value>,
    dir: &Path,
) -> Result<NetworkList, String> {
    let name = network_name(&object)?;
    let versions = select_versions(&object)?;
    let disable_check = read_bool(&object, "disableCheck")?;
    let disable_gc = read_bool(&object, "disableGC")?;
    let inlined_only = read_bool(&object, "loadOnlyInlinedPlugins")?;
    let mut plugins = Vec::new();
    match object.remove("plugins") {
        None if inlined_only => {
            return Err("loadOnlyInlinedPlugins is true but there is no \"plugins\" list".into())
        }
        None => {}
        Some(Value::Array(list)) if list.is_empty() => {
            return Err("plugins: must not be empty".into())
        }
        Some(Value::Array(list)) => {
            for (i, plugin) in list.into_iter().enumerate() {
                let Value::Object(conf) = plugin else {
                    return Err(format!("plugins[{i}]: must be an object"));
                };
                plugins.push(PluginConf::parse(conf, &format!("plugins[{i}]."))?);
            }
        }
        Some(_) => return Err("plugins: must be a list".into()),
    }
    // libcni 1.2: plugin configs may also come from <dir>/<network name>/*.conf.
    if !inlined_only {
        plugins.extend(plugins_from_folder(&dir.join(&name))?);
    }
    if plugins.is_empty() {
        return Err("no plugins (\"plugins\" is missing)".into());
    }
    Ok(NetworkList {
        file: PathBuf::new(),
        name,
        versions,
        disable_check,
        disable_gc,
        plugins,
    })
}

fn plugins_from_folder(folder: &Path) -> Result<Vec<PluginConf>, String> {
    let files = config_files(folder).map_err(|e| e.to_string())?;
    let mut plugins = Vec::new();
    for file in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "conf"))
    {
        let text = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let conf = match serde_json::from_slice(&text) {
            Ok(Value::Object(conf)) => conf,
            Ok(_) => return Err(format!("{}: not a JSON object", file.display())),
            Err(e) => return Err(format!("{}: {e}", file.display())),
        };
        plugins.push(PluginConf::parse(conf, &format!("{}: ", file.display()))?);
    }
    Ok(plugins)
}

/// A single plugin's config, made a list of one (libcni's `ConfListFromConf`).
pub(crate) fn parse_single(object: Map<String, Value>) -> Result<NetworkList, String> {
    if !object.contains_key("type") && object.contains_key("plugins") {
        return Err("type: required (a list of plugins belongs in a *.conflist file)".into());
    }
    let name = network_name(&object)?;
    let versions = select_versions(&object)?;
    let plugin = PluginConf::parse(object, "")?;
    Ok(NetworkList {
        file: PathBuf::new(),
        name,
        versions,
        disable_check: false,
        disable_gc: false,
        plugins: vec![plugin],
    })
}

fn network_name(object: &Map<String, Value>) -> Result<String, String> {
    match object.get("name") {
        Some(Value::String(name)) => {
            check_id(name).map_err(|problem| format!("name: {name:?}: {problem}"))?;
            Ok(name.clone())
        }
        Some(_) => Err("name: must be a string".into()),
        None => Err("name: required".into()),
    }
}

/// The spec's rule for network names and container IDs: an alphanumeric, then
/// alphanumerics, `_`, `.` or `-`.
pub fn check_id(id: &str) -> Result<(), &'static str> {
    let mut bytes = id.bytes();
    match bytes.next() {
        None => Err("must not be empty"),
        Some(b) if !b.is_ascii_alphanumeric() => Err("must start with a letter or digit"),
        _ if bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) => Ok(()),
        _ => Err("may only hold letters, digits, '_', '.' and '-'"),
    }
}

/// libcni reads these as JSON booleans or the strings "true"/"false".
fn read_bool(object: &Map<String, Value>, key: &str) -> Result<bool, String> {
    match object.get(key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(other) => Err(format!("{key}: {other}: must be true or false")),
    }
}

/// The candidate versions, newest first: `cniVersion` and `cniVersions`
/// together, without those newer than peapod implements (the spec: the
/// runtime picks the highest it supports); every remaining one must be one
/// peapod speaks.
fn select_versions(object: &Map<String, Value>) -> Result<Vec<Version>, String> {
    let mut declared = Vec::new();
    match object.get("cniVersion") {
        None => {}
        Some(Value::String(v)) => declared.push(("cniVersion".to_string(), v.clone())),
        Some(_) => return Err("cniVersion: must be a string".into()),
    }
    match object.get("cniVersions") {
        None => {}
        Some(Value::Array(list)) => {
            for (i, v) in list.iter().enumerate() {
                let Value::String(v) = v else {
                    return Err(format!("cniVersions[{i}]: must be a string"));
                };
                declared.push((format!("cniVersions[{i}]"), v.clone()));
            }
        }
        Some(_) => return Err("cniVersions: must be a list of strings".into()),
    }
    if declared.is_empty() {
        return Err("cniVersion: required".into());
    }
    let mut versions = Vec::new();
    for (field, text) in &declared {
        let version =
            Version::parse(text).ok_or_else(|| format!("{field}: {text:?}: not a version"))?;
        if version > CURRENT {
            continue;
        }
        if !SUPPORTED_VERSIONS.contains(&version) {
            return Err(format!(
                "{field}: {text:?}: unsupported (peapod speaks CNI {})",
                supported_list()
            ));
        }
        versions.push(version);
    }
    if versions.is_empty() {
        let (field, text) = &declared[0];
        return Err(format!(
            "{field}: {text:?}: newer than peapod speaks (CNI {})",
            supported_list()
        ));
    }
    versions.sort_by(|a, b| b.cmp(a));
    versions.dedup();
    Ok(versions)
}

pub fn supported_list() -> String {
    let all: Vec<String> = SUPPORTED_VERSIONS.iter().map(Version::to_string).collect();
    all.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    const LIST: &str = r#"{"cniVersion": "1.0.0", "name": "net1",
        "plugins": [{"type": "bridge", "bridge": "x"}, {"type": "portmap", "capabilities": {"portMappings": true}}]}"#;

    #[test]
    fn first_file_in_name_order_wins_and_others_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "20-b.conflist", LIST);
        write(
            dir.path(),
            "10-a.conf",
            r#"{"cniVersion": "0.4.0", "name": "single", "type": "bridge"}"#,
        );
        write(dir.path(), "05-ignored.txt", "not json");
        write(dir.path(), "30-broken.json", "{");
        std::fs::create_dir(dir.path().join("00-dir.conf")).unwrap();
        let files = config_files(dir.path()).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["10-a.conf", "20-b.conflist", "30-broken.json"]);
        let list = load_default(dir.path()).unwrap();
        assert_eq!(list.name, "single");
        assert_eq!(list.versions, [Version(0, 4, 0)]);
        assert_eq!(list.plugins.len(), 1);
        assert_eq!(list.plugins[0].plugin_type, "bridge");
        assert_eq!(list.plugins[0].conf["name"], "single");
        assert!(list.file.ends_with("10-a.conf"));
    }

    #[test]
    fn a_conflist_keeps_plugins_in_order_with_their_keys() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "10.conflist", LIST);
        let list = load_file(&file).unwrap();
        assert_eq!(list.name, "net1");
        assert_eq!(list.types(), ["bridge", "portmap"]);
        assert_eq!(list.plugins[0].conf["bridge"], "x");
        assert!(list.plugins[1].has_capability("portMappings"));
        assert!(!list.plugins[0].has_capability("portMappings"));
        assert!(!list.disable_check);
    }

    #[test]
    fn missing_folder_and_empty_folder_have_no_config() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_default(&dir.path().join("nope")).unwrap_err();
        assert!(matches!(err, CniError::NoConfig { .. }), "{err}");
        let err = load_default(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("no network config") && err.contains(&dir.path().display().to_string()),
            "{err}"
        );
    }

    /// libcni's NetworkConfFromBytes: the highest of cniVersion and cniVersions,
    /// skipping versions newer than the implementation.
    #[test]
    fn versions_are_chosen_as_libcni_does() {
        let cases: &[(&str, Result<Vec<Version>, &str>)] = &[
            (r#""cniVersion": "1.0.0""#, Ok(vec![Version(1, 0, 0)])),
            (r#""cniVersion": "0.3.1""#, Ok(vec![Version(0, 3, 1)])),
            (
                r#""cniVersion": "0.4.0", "cniVersions": ["1.1.0", "1.0.0", "9.0.0"]"#,
                Ok(vec![Version(1, 1, 0), Version(1, 0, 0), Version(0, 4, 0)]),
            ),
            (r#""cniVersions": ["1.0.0"]"#, Ok(vec![Version(1, 0, 0)])),
            ("", Err("cniVersion: required")),
            (r#""cniVersion": "0.2.0""#, Err("cniVersion: \"0.2.0\": unsupported (peapod speaks CNI 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0)")),
            (r#""cniVersion": "2.0.0""#, Err("cniVersion: \"2.0.0\": newer than peapod speaks")),
            (r#""cniVersion": "1.0""#, Err("cniVersion: \"1.0\": not a version")),
            (r#""cniVersions": ["1.0.0", 3]"#, Err("cniVersions[1]: must be a string")),
        ];
        for (versions, want) in cases {
            let comma = if versions.is_empty() { "" } else { "," };
            let text = format!(r#"{{"name": "n", {versions}{comma} "type": "bridge"}}"#);
            let object = serde_json::from_str(&text).unwrap();
            let got = parse_single(object).map(|l| l.versions);
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(&got, want, "{versions}"),
                (Err(got), Err(want)) => assert!(got.starts_with(want), "{versions}: {got}"),
                (got, want) => panic!("{versions}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn broken_configs_name_the_file_and_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("a.conflist", "{", "EOF while parsing"),
            ("a.conflist", "[]", "not a JSON object"),
            (
                "a.conflist",
                r#"{"cniVersion": "1.0.0", "plugins": []}"#,
                "name: required",
            ),
            (
                "a.conflist",
                r#"{"cniVersion": "1.0.0", "name": "-x", "plugins": [{"type": "b"}]}"#,
                "name: \"-x\": must start with a letter or digit",
            ),
            (
                "a.conflist",
                r#"{"cniVersion": "1.0.0", "name": "n", "plugins": []}"#,
                "plugins: must not be empty",
            ),
            (
                "a.conflist",
                r#"{"cniVersion": "1.0.0", "name": "n"}"#,
                "no plugins",
            ),
            (
                "a.conflist",
                r#"{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "b"}, {"bridge": "x"}]}"#,
                "plugins[1].type: required",
            ),
            (
                "a.conflist",
                r#"{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "../b"}]}"#,
                "plugins[0].type: \"../b\": must be a file name",
            ),
            (
                "a.conflist",
                r#"{"cniVersion": "1.0.0", "name": "n", "disableCheck": "maybe", "plugins": [{"type": "b"}]}"#,
                "disableCheck: \"maybe\": must be true or false",
            ),
            (
                "a.conflist",
                r#"{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "b", "capabilities": {"portMappings": "yes"}}]}"#,
                "plugins[0].capabilities: must be an object",
            ),
            (
                "a.conf",
                r#"{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "b"}]}"#,
                "type: required (a list of plugins belongs in a *.conflist file)",
            ),
            (
                "a.json",
                r#"{"cniVersion": "1.0.0", "type": "bridge"}"#,
                "name: required",
            ),
        ];
        for (name, text, want) in cases {
            let file = write(dir.path(), name, text);
            let err = load_file(&file).unwrap_err().to_string();
            let prefix = format!("{}: ", file.display());
            assert!(
                err.starts_with(&prefix) && err.contains(want),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn string_booleans_and_plugins_from_the_network_folder() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "10.conflist",
            r#"{"cniVersion": "1.1.0", "name": "n", "disableCheck": "TRUE", "disableGC": true, "plugins": [{"type": "bridge"}]}"#,
        );
        std::fs::create_dir(dir.path().join("n")).unwrap();
        write(&dir.path().join("n"), "20-b.conf", r#"{"type": "tuning"}"#);
        write(&dir.path().join("n"), "10-a.conf", r#"{"type": "portmap"}"#);
        write(&dir.path().join("n"), "30-c.json", r#"{"type": "ignored"}"#);
        let list = load_file(&file).unwrap();
        assert!(list.disable_check && list.disable_gc);
        assert_eq!(list.types(), ["bridge", "portmap", "tuning"]);
        // loadOnlyInlinedPlugins ignores the folder.
        let file = write(
            dir.path(),
            "10.conflist",
            r#"{"cniVersion": "1.1.0", "name": "n", "loadOnlyInlinedPlugins": true, "plugins": [{"type": "bridge"}]}"#,
        );
        assert_eq!(load_file(&file).unwrap().plugins.len(), 1);
    }

    #[test]
    fn the_contrib_example_loads() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/cni/10-peapod.conflist");
        let list = load_file(&file).unwrap();
        assert_eq!(list.name, "peapod");
        assert_eq!(
            list.versions,
            [Version(1, 1, 0), Version(1, 0, 0), Version(0, 4, 0)]
        );
        assert!(list.disable_check);
        assert_eq!(list.types(), ["bridge", "portmap"]);
        assert!(list.plugins[1].has_capability("portMappings"));
        assert_eq!(list.plugins[0].conf["ipMasq"], false);
    }

    #[test]
    fn ids_follow_the_spec() {
        for ok in ["a", "0abc", "pod_1.x-y", "A"] {
            assert_eq!(check_id(ok), Ok(()), "{ok}");
        }
        for bad in ["", "-a", ".a", "a/b", "a b", "a;b", "é"] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }
}
