//! peapod's executor for a container's init. libcontainer calls `validate`
//! in the init during create, after it has set the user, the capabilities and
//! no_new_privs, and before the init waits for `start`; `exec` runs the user's
//! process after `start`. In `validate` the init loads the container's
//! seccomp filter (seccomp.rs: runc's ENOSYS stub, which libcontainer's loader
//! lacks), hands a notify listener descriptor to the runtime over a socket it
//! inherited (create forwards it to the profile's listener with the state),
//! and then drops the capabilities adjust.rs added only so that a filter can
//! be loaded without no_new_privs, leaving exactly the sets the spec gives.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use oci_spec::runtime::Spec;

use super::seccomp::{self, Filter};

#[derive(Clone, Default)]
pub struct InitExecutor {
    pub filter: Option<Filter>,
    /// The init's end of the socket a notify descriptor goes over.
    pub notify_socket: Option<RawFd>,
    /// Capabilities and sets to drop once the filter is loaded.
    pub drop_caps: Vec<(caps::Capability, caps::CapSet)>,
}

fn failed(what: String) -> ExecutorValidationError {
    ExecutorValidationError::ArgValidationError(what)
}

impl InitExecutor {
    fn load_filter(&self) -> Result<(), String> {
        let Some(filter) = &self.filter else {
            return Ok(());
        };
        let listener: Option<OwnedFd> = seccomp::load(filter)?;
        if let (Some(fd), Some(socket)) = (listener, self.notify_socket) {
            sendmsg::<()>(
                socket,
                &[IoSlice::new(b"seccomp")],
                &[ControlMessage::ScmRights(&[fd.as_raw_fd()])],
                MsgFlags::empty(),
                None,
            )
            .map_err(|e| format!("linux.seccomp: hand over the listener descriptor: {e}"))?;
        }
        Ok(())
    }

    /// The bounding set first (that needs CAP_SETPCAP, dropped last).
    fn drop_added_caps(&self) -> Result<(), String> {
        let mut order = self.drop_caps.clone();
        order.sort_by_key(|(cap, set)| {
            (
                !matches!(set, caps::CapSet::Bounding),
                *cap == caps::Capability::CAP_SETPCAP,
            )
        });
        for (cap, set) in order {
            caps::drop(None, set, cap).map_err(|e| {
                format!("drop {cap} from the {set:?} set after loading seccomp: {e}")
            })?;
        }
        Ok(())
    }
}

impl Executor for InitExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        self.load_filter().map_err(failed)?;
        if let Some(socket) = self.notify_socket {
            let _ = nix::unistd::close(socket);
        }
        self.drop_added_caps().map_err(failed)?;
        DefaultExecutor {}.validate(spec)
    }
}
