use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use nix::fcntl::{fcntl, FcntlArg};
use nix::sys::socket::{
    recvmsg, socketpair, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};
use oci_spec::runtime::Spec;

use super::bundle::{self, Bundle};
use super::console::{self, ConsoleListener};
use super::error::{Error, Result};
use super::foreground::{self, ExitStatus};
use super::init::InitExecutor;
use super::{adjust, copy_up, network, remount, seccomp, validate_id, Runtime};
use crate::error::Context;
use crate::sys::cgroup::{FreezerState, Layout};

/// A container's standard input, output and error.
pub struct Stdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

#[derive(Clone, Copy)]
pub struct CreateOptions<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub pid_file: Option<&'a Path>,
    pub console_socket: Option<&'a Path>,
    pub preserve_fds: i32,
    pub no_pivot: bool,
}

impl Runtime {
    /// `create`: the container's init is set up and waits for `start`.
    pub fn create(&self, opts: &CreateOptions) -> Result<Container> {
        self.check_new(opts.id)?;
        let bundle = bundle::load(opts.bundle)?;
        self.create_from(&bundle, opts, None)
    }

    /// `create` from a bundle folder and a spec the caller built (the pod
    /// supervisor): config.json is written into the folder for libcontainer,
    /// and the value is what our checks and adjustments use. The container's
    /// stdio are the descriptors given (the supervisor's log pipes).
    pub fn create_with_spec(
        &self,
        opts: &CreateOptions,
        spec: Spec,
        stdio: Stdio,
    ) -> Result<Container> {
        self.check_new(opts.id)?;
        let bundle = bundle::write(opts.bundle, spec)?;
        self.create_from(&bundle, opts, Some(stdio))
    }

    /// A new container's id: valid, and not taken.
    fn check_new(&self, id: &str) -> Result<()> {
        validate_id(id)?;
        if self.container_dir(id).exists() {
            return Err(Error::Exists(id.to_string()));
        }
        Ok(())
    }

    fn create_from(
        &self,
        bundle: &Bundle,
        opts: &CreateOptions,
        stdio: Option<Stdio>,
    ) -> Result<Container> {
        check_console(bundle, opts.console_socket)?;
        if !self.systemd {
            check_cgroup(bundle, opts.id)?;
        }
        self.ensure_root()?;

        let adjusted = adjust::adjust(&self.root, opts.id, bundle)?;
        let lc_bundle = adjusted
            .as_ref()
            .map_or(bundle.dir.as_path(), |a| a.dir.as_path());
        let built =
            InitSeccomp::prepare(adjusted.as_ref(), opts.preserve_fds).and_then(|seccomp| {
                Ok((
                    self.build(bundle, lc_bundle, opts, stdio, &seccomp)?,
                    seccomp,
                ))
            });
        let (mut container, seccomp) = match built {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(adjust::adjusted_dir(&self.root, opts.id));
                return Err(e);
            }
        };
        let finished = self
            .finish_create(bundle, &container, adjusted.as_ref())
            .and_then(|()| seccomp.forward_listener(bundle, adjusted.as_ref(), &container));
        if let Err(err) = finished {
            let _ = self.destroy(&mut container, true);
            return Err(err);
        }
        Ok(container)
    }

    fn build(
        &self,
        bundle: &Bundle,
        lc_bundle: &Path,
        opts: &CreateOptions,
        stdio: Option<Stdio>,
        seccomp: &InitSeccomp,
    ) -> Result<Container> {
        let mut builder = ContainerBuilder::new(opts.id.to_string(), SyscallType::default())
            .with_executor(seccomp.executor.clone());
        if let Some(stdio) = stdio {
            builder = builder
                .with_stdin(stdio.stdin)
                .with_stdout(stdio.stdout)
                .with_stderr(stdio.stderr);
        }
        let builder = builder
            .with_root_path(&self.root)
            .context(|| format!("state folder {}", self.root.display()))?
            .with_pid_file(opts.pid_file)
            .context(|| "--pid-file".into())?
            .with_console_socket(opts.console_socket)
            .with_preserved_fds(opts.preserve_fds)
            .as_init(lc_bundle)
            .with_systemd(self.systemd)
            // libcontainer only uses this to pair terminal with console socket,
            // which check_console has already done.
            .with_detach(bundle.terminal())
            .with_no_pivot(opts.no_pivot);
        Ok(super::with_default_sigpipe(|| builder.build())
            .context(|| format!("create container {}", opts.id))?)
    }

    /// `run`: create and start; unless detached, wait for the container's init,
    /// forwarding signals (and proxying its terminal), then delete it unless `keep`.
    pub fn run(&self, opts: &CreateOptions, detach: bool, keep: bool) -> Result<ExitStatus> {
        self.check_new(opts.id)?;
        let bundle = bundle::load(opts.bundle)?;
        let own_console = if bundle.terminal() && opts.console_socket.is_none() && !detach {
            self.ensure_root()?;
            let path = self
                .root
                .join(format!(".console-{}-{}.sock", opts.id, std::process::id()));
            Some(ConsoleListener::bind(&path)?)
        } else {
            None
        };
        let with_console = CreateOptions {
            console_socket: opts
                .console_socket
                .or(own_console.as_ref().map(|c| c.path())),
            ..*opts
        };
        let mut container = self.create_from(&bundle, &with_console, None)?;
        let master = match &own_console {
            Some(listener) => match listener.receive_master() {
                Ok(m) => Some(m),
                Err(e) => {
                    let _ = self.destroy(&mut container, true);
                    return Err(e);
                }
            },
            None => None,
        };
        drop(own_console);
        if !detach {
            // From here on a signal for us is the container's: keep it pending
            // for `foreground::wait` (the init already exists, with its own mask).
            foreground::block_signals()?;
        }
        if let Err(e) = container
            .start()
            .context(|| format!("start container {}", opts.id))
        {
            let _ = self.destroy(&mut container, true);
            return Err(e.into());
        }
        if detach {
            return Ok(ExitStatus(0));
        }
        let pid = container
            .pid()
            .ok_or_else(|| Error::Invalid(format!("container {} has no init process", opts.id)))?;
        let exit = foreground::wait(pid, master);
        if keep {
            return exit;
        }
        // The init is reaped: nothing is left to kill.
        self.destroy(&mut container, false)?;
        exit
    }

    fn finish_create(
        &self,
        bundle: &Bundle,
        container: &Container,
        adjusted: Option<&adjust::Adjusted>,
    ) -> Result<()> {
        self.record_init(container, &bundle.dir)?;
        if let (Some(adjusted), Some(pid)) = (adjusted, container.pid()) {
            let root = bundle
                .spec
                .root()
                .as_ref()
                .map(|r| r.path().clone())
                .unwrap_or_default();
            copy_up::copy_up(&bundle.dir.join(root), pid.as_raw(), &adjusted.copy_up)?;
        }
        if let Some(pid) = container.pid() {
            remount::apply(pid.as_raw(), &remount::plan(&bundle.spec))?;
            if let Some(process) = bundle.spec.process().as_ref().filter(|_| bundle.terminal()) {
                console::prepare_init_terminal(pid.as_raw(), process)?;
            }
        }
        if bundle.has_new_netns() {
            if let Some(pid) = container.pid() {
                network::bring_up_loopback(pid)?;
            }
        }
        Ok(())
    }
}

fn check_console(bundle: &Bundle, console_socket: Option<&Path>) -> Result<()> {
    match (bundle.terminal(), console_socket) {
        (true, None) => Err(Error::Invalid(format!(
            "{}: process.terminal is true but no --console-socket was given",
            bundle.config_path().display()
        ))),
        (false, Some(_)) => Err(Error::Invalid(format!(
            "--console-socket was given but process.terminal is false in {}",
            bundle.config_path().display()
        ))),
        (true, Some(path)) if !path.exists() => Err(Error::Invalid(format!(
            "--console-socket {}: no such socket",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// The cgroup the container goes into, as runc checks it: a frozen one would
/// hold the init frozen for ever (refused); one that already has processes is
/// shared with them (a warning, as runc gives).
fn check_cgroup(bundle: &Bundle, id: &str) -> Result<()> {
    let path = bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| format!("/{}/{id}", adjust::DEFAULT_CGROUP_PARENT).into());
    let cgroup = Layout::host().cgroup(&path);
    if cgroup
        .freezer_state()
        .is_ok_and(|s| s != FreezerState::Thawed)
    {
        return Err(Error::Invalid(format!(
            "cgroup {} is frozen: thaw it or give another linux.cgroupsPath",
            path.display()
        )));
    }
    if let Ok(pids) = cgroup.pids() {
        if !pids.is_empty() {
            tracing::warn!(
                "container {id}: cgroup {} is not empty: {} process(es) found",
                path.display(),
                pids.len()
            );
        }
    }
    Ok(())
}

/// The init's seccomp filter (see init.rs): compiled here, loaded by the
/// init; a notify listener descriptor comes back over a socket pair.
struct InitSeccomp {
    executor: InitExecutor,
    /// Our end of the socket pair, for a notify filter.
    ours: Option<OwnedFd>,
    /// The init's end: closed here once the init holds its copy.
    theirs: Option<OwnedFd>,
}

impl InitSeccomp {
    fn prepare(adjusted: Option<&adjust::Adjusted>, preserve_fds: i32) -> Result<Self> {
        let mut this = InitSeccomp {
            executor: InitExecutor::default(),
            ours: None,
            theirs: None,
        };
        let Some(adjusted) = adjusted else {
            return Ok(this);
        };
        let Some(profile) = &adjusted.seccomp else {
            return Ok(this);
        };
        let filter = seccomp::build(profile).map_err(Error::Invalid)?;
        if filter.notify {
            let (ours, theirs) = socketpair(
                AddressFamily::Unix,
                SockType::Datagram,
                None,
                SockFlag::SOCK_CLOEXEC,
            )
            .context(|| "seccomp listener socket pair".into())?;
            // Above the descriptors the container is given (--preserve-fds).
            let above = (3 + preserve_fds.max(0)).max(64);
            let theirs = fcntl(theirs.as_raw_fd(), FcntlArg::F_DUPFD_CLOEXEC(above))
                .context(|| "seccomp listener socket".into())?;
            // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor we own.
            let theirs = unsafe { OwnedFd::from_raw_fd(theirs) };
            this.executor.notify_socket = Some(theirs.as_raw_fd());
            this.ours = Some(ours);
            this.theirs = Some(theirs);
        }
        this.executor.filter = Some(filter);
        this.executor.drop_caps = adjusted.added_caps.clone();
        Ok(this)
    }

    /// Hands the init's listener descriptor to the profile's listener with the
    /// container's state, as runc does.
    fn forward_listener(
        mut self,
        bundle: &Bundle,
        adjusted: Option<&adjust::Adjusted>,
        container: &Container,
    ) -> Result<()> {
        drop(self.theirs.take());
        let Some(ours) = &self.ours else {
            return Ok(());
        };
        let fd = receive_fd(ours)?;
        let pid = container
            .pid()
            .ok_or_else(|| Error::Invalid("container init has no pid".into()))?;
        let profile = adjusted.and_then(|a| a.seccomp.as_ref());
        super::exec::send_to_listener(
            profile,
            bundle.spec.annotations().as_ref(),
            container,
            "creating",
            pid,
            &fd,
        )
    }
}

/// The descriptor the init sent (it did before create returned), without waiting.
fn receive_fd(socket: &OwnedFd) -> Result<OwnedFd> {
    let mut buf = [0u8; 16];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .context(|| "receive the init's seccomp listener descriptor".into())?;
    for cmsg in msg.cmsgs().context(|| "seccomp listener message".into())? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just installed this descriptor for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(Error::Invalid(
        "the init sent no seccomp listener descriptor".into(),
    ))
}
