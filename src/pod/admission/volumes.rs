//! Volumes (emptyDir, hostPath) and each container's mounts of them.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1 as k8s;

use super::{model, not_one_of, Admission, ManifestError, NOT_ENFORCED};

impl Admission<'_> {
    pub(super) fn volumes(
        &mut self,
        volumes: Option<Vec<k8s::Volume>>,
    ) -> Result<Vec<model::Volume>, ManifestError> {
        let mut names = BTreeSet::new();
        let mut out = Vec::new();
        for (i, volume) in volumes.unwrap_or_default().into_iter().enumerate() {
            let field = format!("spec.volumes[{i}]");
            self.dns_label(&format!("{field}.name"), &volume.name)?;
            if !names.insert(volume.name.clone()) {
                return Err(self.invalid(
                    format!("{field}.name"),
                    format!("duplicate name {:?}", volume.name),
                ));
            }
            // The serialized form names the source as the manifest did ("configMap", ...).
            let kinds: Vec<String> = match serde_json::to_value(&volume) {
                Ok(serde_json::Value::Object(map)) => map
                    .into_iter()
                    .map(|(key, _)| key)
                    .filter(|key| key != "name")
                    .collect(),
                _ => Vec::new(),
            };
            let source = match kinds.as_slice() {
                // Kubernetes defaults a volume without a source to an emptyDir.
                [] => model::VolumeSource::EmptyDir {
                    memory: false,
                    size_limit_bytes: None,
                },
                [kind] if kind == "emptyDir" => {
                    self.empty_dir(&field, volume.empty_dir.unwrap_or_default())?
                }
                [kind] if kind == "hostPath" => {
                    self.host_path(&field, volume.host_path.unwrap_or_default())?
                }
                [kind] => {
                    return Err(self.unsupported(field, format!("unsupported volume type {kind:?}")))
                }
                _ => {
                    return Err(self.invalid(
                        field,
                        format!(
                            "may not specify more than 1 volume type ({})",
                            kinds.join(", ")
                        ),
                    ))
                }
            };
            out.push(model::Volume {
                name: volume.name,
                source,
            });
        }
        Ok(out)
    }

    fn empty_dir(
        &self,
        field: &str,
        source: k8s::EmptyDirVolumeSource,
    ) -> Result<model::VolumeSource, ManifestError> {
        let k8s::EmptyDirVolumeSource { medium, size_limit } = source;
        let memory = match medium.as_deref() {
            None | Some("") => false,
            Some("Memory") => true,
            Some(medium) if medium.starts_with("HugePages") => {
                return Err(self.unsupported(
                    format!("{field}.emptyDir.medium"),
                    format!("unsupported value {medium:?}: huge pages"),
                ))
            }
            Some(other) => {
                return Err(self.invalid(
                    format!("{field}.emptyDir.medium"),
                    not_one_of(other, &["", "Memory"]),
                ))
            }
        };
        let size_limit_bytes = size_limit
            .map(|limit| self.bytes(&format!("{field}.emptyDir.sizeLimit"), &limit))
            .transpose()?;
        Ok(model::VolumeSource::EmptyDir {
            memory,
            size_limit_bytes,
        })
    }

    fn host_path(
        &self,
        field: &str,
        source: k8s::HostPathVolumeSource,
    ) -> Result<model::VolumeSource, ManifestError> {
        let k8s::HostPathVolumeSource { path, type_ } = source;
        let path_field = format!("{field}.hostPath.path");
        if path.is_empty() {
            return Err(self.invalid(path_field, "required"));
        }
        if !path.starts_with('/') {
            return Err(self.invalid(
                path_field,
                format!("must be an absolute path, not {path:?}"),
            ));
        }
        if path.split('/').any(|part| part == "..") {
            return Err(self.invalid(path_field, "must not contain '..'"));
        }
        let kind = match type_.as_deref().unwrap_or("") {
            "" => model::HostPathType::Unset,
            "DirectoryOrCreate" => model::HostPathType::DirectoryOrCreate,
            "Directory" => model::HostPathType::Directory,
            "FileOrCreate" => model::HostPathType::FileOrCreate,
            "File" => model::HostPathType::File,
            "Socket" => model::HostPathType::Socket,
            "CharDevice" => model::HostPathType::CharDevice,
            "BlockDevice" => model::HostPathType::BlockDevice,
            other => {
                return Err(self.invalid(
                    format!("{field}.hostPath.type"),
                    not_one_of(
                        other,
                        &[
                            "",
                            "DirectoryOrCreate",
                            "Directory",
                            "FileOrCreate",
                            "File",
                            "Socket",
                            "CharDevice",
                            "BlockDevice",
                        ],
                    ),
                ))
            }
        };
        Ok(model::VolumeSource::HostPath { path, kind })
    }

    pub(super) fn mounts(
        &mut self,
        field: &str,
        mounts: Option<Vec<k8s::VolumeMount>>,
        volumes: &BTreeSet<String>,
    ) -> Result<Vec<model::VolumeMount>, ManifestError> {
        let mut paths = BTreeSet::new();
        let mut out = Vec::new();
        for (i, mount) in mounts.unwrap_or_default().into_iter().enumerate() {
            let at = format!("{field}.volumeMounts[{i}]");
            let k8s::VolumeMount {
                mount_path,
                mount_propagation,
                name,
                read_only,
                recursive_read_only,
                sub_path,
                sub_path_expr,
            } = mount;
            if name.is_empty() {
                return Err(self.invalid(format!("{at}.name"), "required"));
            }
            if !volumes.contains(&name) {
                return Err(self.invalid(format!("{at}.name"), format!("no volume {name:?}")));
            }
            if mount_path.is_empty() {
                return Err(self.invalid(format!("{at}.mountPath"), "required"));
            }
            if !mount_path.starts_with('/') {
                return Err(self.invalid(
                    format!("{at}.mountPath"),
                    format!("must be an absolute path, not {mount_path:?}"),
                ));
            }
            let normalized = match mount_path.trim_end_matches('/') {
                "" => "/",
                path => path,
            };
            if !paths.insert(normalized.to_owned()) {
                return Err(self.invalid(
                    format!("{at}.mountPath"),
                    format!("duplicate mount path {mount_path:?}"),
                ));
            }
            if sub_path_expr.is_some_and(|expr| !expr.is_empty()) {
                return Err(self.unsupported(format!("{at}.subPathExpr"), "unsupported"));
            }
            let sub_path = sub_path.filter(|path| !path.is_empty());
            if let Some(path) = &sub_path {
                if path.starts_with('/') {
                    return Err(self.invalid(
                        format!("{at}.subPath"),
                        format!("must be a relative path, not {path:?}"),
                    ));
                }
                if path.split('/').any(|part| part == "..") {
                    return Err(self.invalid(format!("{at}.subPath"), "must not contain '..'"));
                }
            }
            match mount_propagation.as_deref() {
                None | Some("None") => {}
                Some(mode @ ("HostToContainer" | "Bidirectional")) => self.warn(
                    &format!("{at}.mountPropagation"),
                    format!("{mode} is not applied yet (mounts are private)"),
                ),
                Some(other) => {
                    return Err(self.invalid(
                        format!("{at}.mountPropagation"),
                        not_one_of(other, &["None", "HostToContainer", "Bidirectional"]),
                    ))
                }
            }
            let read_only = read_only.unwrap_or(false);
            match recursive_read_only.as_deref() {
                None | Some("Disabled") => {}
                Some("Enabled" | "IfPossible") if !read_only => {
                    return Err(self.invalid(
                        format!("{at}.recursiveReadOnly"),
                        "may only be set when readOnly is true",
                    ))
                }
                Some("Enabled" | "IfPossible") => {
                    self.warn(&format!("{at}.recursiveReadOnly"), NOT_ENFORCED)
                }
                Some(other) => {
                    return Err(self.invalid(
                        format!("{at}.recursiveReadOnly"),
                        not_one_of(other, &["Disabled", "Enabled", "IfPossible"]),
                    ))
                }
            }
            out.push(model::VolumeMount {
                volume: name,
                mount_path,
                read_only,
                sub_path,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::admission::tests::*;

    #[test]
    fn volume_and_mount_forms() {
        let text = with_volumes(
            "[{name: a, hostPath: {path: /srv}}, {name: b, hostPath: {path: /dev/kvm, type: CharDevice}}, \
             {name: c, emptyDir: {}}, {name: d, emptyDir: {medium: \"\", sizeLimit: 1Gi}}]",
            ", volumeMounts: [{name: a, mountPath: /a, subPath: \"\", mountPropagation: None}, \
             {name: a, mountPath: /a2, readOnly: true, recursiveReadOnly: Disabled}, \
             {name: d, mountPath: /, subPathExpr: \"\"}]",
        );
        let Admitted { pod, warnings } = admit_ok(&text);
        assert!(warnings.is_empty(), "{warnings:?}");
        let sources: Vec<_> = pod.volumes.iter().map(|v| v.source.clone()).collect();
        assert_eq!(
            sources,
            [
                model::VolumeSource::HostPath {
                    path: "/srv".to_owned(),
                    kind: model::HostPathType::Unset
                },
                model::VolumeSource::HostPath {
                    path: "/dev/kvm".to_owned(),
                    kind: model::HostPathType::CharDevice
                },
                model::VolumeSource::EmptyDir {
                    memory: false,
                    size_limit_bytes: None
                },
                model::VolumeSource::EmptyDir {
                    memory: false,
                    size_limit_bytes: Some(1 << 30)
                },
            ]
        );
        let mounts = &pod.containers[0].mounts;
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[0].sub_path, None);
        assert!(mounts[1].read_only);
        assert_eq!(mounts[2].mount_path, "/");
    }

    #[test]
    fn refusals_name_the_file_and_field() {
        let volumes3 = |third: &str| {
            with_volumes(
                &format!("[{{name: a, emptyDir: {{}}}}, {{name: b, emptyDir: {{}}}}, {{name: c, {third}}}]"),
                "",
            )
        };
        let cases: Vec<(String, &str)> = vec![
            (volumes3("configMap: {name: cm}"), "web.yaml: spec.volumes[2]: unsupported volume type \"configMap\""),
            (volumes3("secret: {secretName: s}"), "web.yaml: spec.volumes[2]: unsupported volume type \"secret\""),
            (volumes3("persistentVolumeClaim: {claimName: c}"), "web.yaml: spec.volumes[2]: unsupported volume type \"persistentVolumeClaim\""),
            (volumes3("projected: {sources: []}"), "web.yaml: spec.volumes[2]: unsupported volume type \"projected\""),
            (volumes3("downwardAPI: {items: []}"), "web.yaml: spec.volumes[2]: unsupported volume type \"downwardAPI\""),
            (volumes3("nfs: {server: s, path: /}"), "web.yaml: spec.volumes[2]: unsupported volume type \"nfs\""),
            (volumes3("emptyDir: {}, hostPath: {path: /x}"), "web.yaml: spec.volumes[2]: may not specify more than 1 volume type"),
            (volumes3("emptyDir: {medium: Disk}"), "web.yaml: spec.volumes[2].emptyDir.medium: unsupported value \"Disk\""),
            (volumes3("emptyDir: {medium: HugePages}"), "web.yaml: spec.volumes[2].emptyDir.medium: unsupported value \"HugePages\": huge pages"),
            (volumes3("emptyDir: {sizeLimit: lots}"), "web.yaml: spec.volumes[2].emptyDir.sizeLimit: invalid quantity \"lots\""),
            (volumes3("hostPath: {path: var/log}"), "web.yaml: spec.volumes[2].hostPath.path: must be an absolute path"),
            (volumes3("hostPath: {path: \"\"}"), "web.yaml: spec.volumes[2].hostPath.path: required"),
            (volumes3("hostPath: {path: /var/../etc}"), "web.yaml: spec.volumes[2].hostPath.path: must not contain '..'"),
            (volumes3("hostPath: {path: /x, type: Folder}"), "web.yaml: spec.volumes[2].hostPath.type: unsupported value \"Folder\""),
            (with_volumes("[{name: Data}]", ""), "web.yaml: spec.volumes[0].name: invalid name \"Data\""),
            (with_volumes("[{name: d}, {name: d}]", ""), "web.yaml: spec.volumes[1].name: duplicate name \"d\""),
            (with_volumes("[{name: v}]", ", volumeMounts: [{name: v, mountPath: /v}, {name: x, mountPath: /x}]"), "web.yaml: spec.containers[0].volumeMounts[1].name: no volume \"x\""),
            (with_volumes("[{name: v}]", ", volumeMounts: [{mountPath: /v}]"), "web.yaml: spec.containers[0].volumeMounts[0].name: required"),
            (with_volumes("[{name: v}]", ", volumeMounts: [{name: v, mountPath: data}]"), "web.yaml: spec.containers[0].volumeMounts[0].mountPath: must be an absolute path"),
            (with_volumes("[{name: v}]", ", volumeMounts: [{name: v}]"), "web.yaml: spec.containers[0].volumeMounts[0].mountPath: required"),
            (with_volumes("[{name: v}, {name: w}]", ", volumeMounts: [{name: v, mountPath: /d}, {name: w, mountPath: /d/}]"), "web.yaml: spec.containers[0].volumeMounts[1].mountPath: duplicate mount path \"/d/\""),
            (with_volumes("[{name: v}]", ", volumeMounts: [{name: v, mountPath: /d, subPath: /abs}]"), "web.yaml: spec.containers[0].volumeMounts[0].subPath: must be a relative path"),
            (with_volumes("[{name: v}]", ", volumeMounts: [{name: v, mountPath: /d, subPath: a/../../b}]"), "web.yaml: spec.containers[0].volumeMounts[0].subPath: must not contain '..'"),
            (with_volumes("[{name: v}]", ", volumeMounts: [{name: v, mountPath: /d, subPathExpr: \"$(POD)\"}]"), "web.yaml: spec.containers[0].volumeMounts[0].subPathExpr: unsupported"),
            (with_volumes("[{name: v}]", ", volumeMounts: [{name: v, mountPath: /d, mountPropagation: Sideways}]"), "web.yaml: spec.containers[0].volumeMounts[0].mountPropagation: unsupported value \"Sideways\""),
            (with_volumes("[{name: v}]", ", volumeMounts: [{name: v, mountPath: /d, recursiveReadOnly: Enabled}]"), "web.yaml: spec.containers[0].volumeMounts[0].recursiveReadOnly: may only be set when readOnly is true"),
        ];
        assert_refusals(&cases);
    }

    #[test]
    fn warnings_name_the_field() {
        let cases = [
            (
                with_volumes(
                    "[{name: v, emptyDir: {}}]",
                    ", volumeMounts: [{name: v, mountPath: /v, mountPropagation: HostToContainer}]",
                ),
                "web.yaml: spec.containers[0].volumeMounts[0].mountPropagation: HostToContainer is not applied",
            ),
        ];
        assert_warnings(&cases);
    }
}
