//! The names the kubelet's systemd cgroup driver gives the pod cgroups that its
//! cgroupfs driver (`cgroups.rs`) makes as folders: each path becomes one
//! slice whose name joins the components with `-` (systemd nests slices by
//! dashes), and a container becomes a scope `<prefix>-<id>.scope` in its pod's
//! slice, written as runc's `slice:prefix:name` cgroupsPath.
//!
//! Only the names: `cgroups.rs` asks systemd for these units under the
//! systemd driver (`--cgroup-driver systemd`).

use super::model::Pod;
use super::qos;

/// The kubelet's `ConvertCgroupNameToSystemd`: `/kubepods/burstable/pod<uid>`
/// → `kubepods-burstable-pod<uid with '_' for '-'>.slice` (a dash inside a
/// component would read as one more level). The root is `-.slice`.
pub fn slice_name(cgroupfs_path: &str) -> String {
    let parts: Vec<String> = cgroupfs_path
        .split('/')
        .filter(|p| !p.is_empty())
        .map(|p| p.replace('-', "_"))
        .collect();
    if parts.is_empty() {
        return "-.slice".into();
    }
    format!("{}.slice", parts.join("-"))
}

/// Where systemd puts a slice in the cgroup tree (`systemd.slice(5)`):
/// `a-b-c.slice` is `/a.slice/a-b.slice/a-b-c.slice`.
pub fn slice_cgroup(slice: &str) -> String {
    let Some(stem) = slice.strip_suffix(".slice") else {
        return format!("/{slice}");
    };
    if stem == "-" || stem.is_empty() {
        return "/".into();
    }
    let mut path = String::new();
    let mut name = String::new();
    for part in stem.split('-') {
        if !name.is_empty() {
            name.push('-');
        }
        name.push_str(part);
        path.push_str(&format!("/{name}.slice"));
    }
    path
}

/// The pod's slice: the kubelet's systemd name of the pod cgroup
/// (`peapod-kubepods-burstable-pod<uid>.slice` under the default prefix).
pub fn pod_slice(prefix: &str, pod: &Pod) -> String {
    slice_name(&qos::pod_cgroup(prefix, pod))
}

/// A container's cgroupsPath under systemd, as containerd's CRI writes it
/// for the kubelet's systemd driver: `<pod slice>:<scope prefix>:<id>`.
pub fn container_cgroups_path(prefix: &str, pod: &Pod, scope_prefix: &str, id: &str) -> String {
    format!("{}:{scope_prefix}:{id}", pod_slice(prefix, pod))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The kubelet's cm.ConvertCgroupNameToSystemd and its test table
    // (pkg/kubelet/cm/cgroup_manager_linux*.go): components joined by dashes,
    // dashes inside them escaped as underscores.
    #[test]
    fn cgroupfs_paths_become_the_kubelets_slice_names() {
        for (path, slice) in [
            ("/", "-.slice"),
            ("/kubepods", "kubepods.slice"),
            ("/kubepods/burstable", "kubepods-burstable.slice"),
            (
                "/kubepods/burstable/pod0a1b2c3d-4e5f-6789",
                "kubepods-burstable-pod0a1b2c3d_4e5f_6789.slice",
            ),
            ("/kubepods/pod1234", "kubepods-pod1234.slice"),
            (
                "/peapod/kubepods/besteffort/podx",
                "peapod-kubepods-besteffort-podx.slice",
            ),
        ] {
            assert_eq!(slice_name(path), slice, "{path}");
        }
    }

    // systemd.slice(5): "foo-bar.slice is a slice that is located within foo.slice".
    #[test]
    fn slices_sit_in_the_cgroup_tree_by_their_dashes() {
        for (slice, path) in [
            ("-.slice", "/"),
            ("kubepods.slice", "/kubepods.slice"),
            (
                "kubepods-burstable-pod0a1b_2c3d.slice",
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a1b_2c3d.slice",
            ),
        ] {
            assert_eq!(slice_cgroup(slice), path, "{slice}");
        }
    }

    #[test]
    fn a_containers_cgroups_path_is_runcs_systemd_form_in_the_pod_slice() {
        let pod = crate::pod::admission::tests::admit_ok(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p, uid: 0a1b-2c3d}\n\
             spec: {containers: [{name: c, image: busybox}]}\n",
        )
        .pod;
        let path = container_cgroups_path("/", &pod, "cri-containerd", "abc");
        assert_eq!(
            path,
            "kubepods-besteffort-pod0a1b_2c3d.slice:cri-containerd:abc"
        );
        assert_eq!(
            slice_cgroup(&pod_slice("/", &pod)),
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0a1b_2c3d.slice"
        );
    }
}
