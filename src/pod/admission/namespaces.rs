//! What a pod could share with the host: its network, PID, IPC and user
//! namespaces. A pod always gets its own.

use super::{Admission, ManifestError};

impl Admission<'_> {
    pub(super) fn host_namespaces(
        &self,
        host_network: Option<bool>,
        host_pid: Option<bool>,
        host_ipc: Option<bool>,
        host_users: Option<bool>,
    ) -> Result<(), ManifestError> {
        for (field, shared) in [
            ("spec.hostNetwork", host_network),
            ("spec.hostPID", host_pid),
            ("spec.hostIPC", host_ipc),
        ] {
            if shared == Some(true) {
                return Err(
                    self.unsupported(field, "unsupported: a pod always gets its own namespaces")
                );
            }
        }
        if host_users == Some(false) {
            return Err(self.unsupported("spec.hostUsers", "unsupported: user namespaces"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::pod::admission::tests::*;

    #[test]
    fn refusals_name_the_file_and_field() {
        let cases: Vec<(String, &str)> = vec![
            (
                pod("{hostNetwork: true, containers: [{name: a, image: i}]}"),
                "web.yaml: spec.hostNetwork: unsupported",
            ),
            (
                pod("{hostPID: true, containers: [{name: a, image: i}]}"),
                "web.yaml: spec.hostPID: unsupported",
            ),
            (
                pod("{hostIPC: true, containers: [{name: a, image: i}]}"),
                "web.yaml: spec.hostIPC: unsupported",
            ),
            (
                pod("{hostUsers: false, containers: [{name: a, image: i}]}"),
                "web.yaml: spec.hostUsers: unsupported",
            ),
        ];
        assert_refusals(&cases);
    }
}
