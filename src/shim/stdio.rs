//! A process's standard streams as containerd hands them over: FIFO paths,
//! `file://` and `binary://` log URIs, or a terminal whose master the runtime
//! sends back over a console socket.

use std::fs::OpenOptions;
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use tokio::io::unix::AsyncFd;
use tokio::task::JoinHandle;

use super::reaper::Reaper;
use super::runtime::ChildStdio;
use super::Error;

/// What containerd asked for, as given in Create/Exec.
#[derive(Clone, Default, Debug)]
pub struct IoPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// What the shim keeps of a process's streams while it runs.
#[derive(Default)]
pub struct Streams {
    /// A write end of the stdin FIFO: while the shim holds it, the copy into
    /// the process never sees EOF, even when the client goes away (a
    /// containerd restart); CloseIO drops it, and the copy ends once
    /// everything the client wrote has been copied.
    stdin_writer: Option<OwnedFd>,
    /// The stdin copy, stopped when the process is deleted.
    stdin_copy: Option<JoinHandle<()>>,
    /// The terminal's master side (ResizePty).
    pub console: Option<Arc<OwnedFd>>,
    /// Output copies to finish before the exit is reported.
    copies: Vec<JoinHandle<()>>,
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// How long an output FIFO may wait for containerd to open its reading end.
const READER_WAIT: Duration = Duration::from_secs(5);

/// How long a `binary://` logger may take to say it is ready.
const LOGGER_WAIT: Duration = Duration::from_secs(10);

/// A listening console socket: the runtime sends the terminal master to it.
pub struct ConsoleSocket {
    pub path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    pub fn new(dir: &Path) -> Result<Self, Error> {
        let path = dir.join(format!(
            ".console-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .map_err(|e| Error::io(format!("bind {}", path.display()), e))?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        Ok(ConsoleSocket { path, listener })
    }

    /// Receives the terminal master as soon as the runtime sends it (while
    /// the runtime still runs) and starts copying at once: when the
    /// process, a session leader, exits, the kernel flushes what the master
    /// has not read yet.
    pub fn attach(self, io: IoPaths) -> Result<Attaching, Error> {
        self.listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("console socket", e))?;
        let listener = tokio::net::UnixListener::from_std(self.listener)
            .map_err(|e| Error::io("console socket", e))?;
        let task = tokio::spawn(async move {
            let (stream, _) = listener
                .accept()
                .await
                .map_err(|e| Error::io("console socket", e))?;
            let master = loop {
                stream
                    .readable()
                    .await
                    .map_err(|e| Error::io("console socket", e))?;
                match stream.try_io(tokio::io::Interest::READABLE, || {
                    receive_fd(stream.as_raw_fd())
                }) {
                    Ok(fd) => break fd,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(Error::io("receive the terminal", e)),
                }
            };
            attach_console(&io, master).await
        });
        Ok(Attaching {
            path: self.path,
            task,
        })
    }
}

/// A console socket waiting for its terminal; dropping it gives up.
pub struct Attaching {
    path: PathBuf,
    task: JoinHandle<Result<Streams, Error>>,
}

impl Attaching {
    /// The process's streams, once the runtime (now exited) sent the master.
    pub async fn streams(mut self) -> Result<Streams, Error> {
        let task = &mut self.task;
        match tokio::time::timeout(Duration::from_secs(10), task).await {
            Ok(Ok(result)) => result,
            _ => Err(Error::Other(
                "the runtime sent no terminal on the console socket".into(),
            )),
        }
    }
}

impl Drop for Attaching {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One descriptor sent with SCM_RIGHTS.
fn receive_fd(socket: RawFd) -> std::io::Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        socket,
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just gave us this descriptor.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(std::io::Error::other("no descriptor in the message"))
}

fn open_file(path: &str) -> Result<OwnedFd, Error> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .map(OwnedFd::from)
        .map_err(|e| Error::io(format!("open {path}"), e))
}

/// Opens a FIFO read-write: such an open never blocks, and a writer holding
/// it never gets SIGPIPE while containerd (the reader) restarts.
fn open_fifo(path: &str) -> Result<OwnedFd, Error> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map(OwnedFd::from)
        .map_err(|e| Error::io(format!("open {path}"), e))
}

/// The stdin FIFO: its read end (read-only, non-blocking) for the copy, and
/// a write end for the shim to hold until CloseIO, as containerd's runc shim
/// does. The copy ends, and the process sees EOF, only once both the client
/// and the shim have closed their write ends and the FIFO is empty.
fn open_stdin_fifo(path: &str) -> Result<(OwnedFd, OwnedFd), Error> {
    let open = |read: bool| {
        OpenOptions::new()
            .read(read)
            .write(!read)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map(OwnedFd::from)
            .map_err(|e| Error::io(format!("open {path}"), e))
    };
    // The read end first: a non-blocking write-only open fails without a reader.
    let reader = open(true)?;
    Ok((reader, open(false)?))
}

/// An output FIFO, once its reader is there. containerd opens its reading
/// end in the background: what is written and closed before then would be
/// lost with the pipe. Waits (a bounded time) until a write-only open
/// succeeds, which means a reader holds the FIFO.
async fn open_output_fifo(path: &str) -> Result<OwnedFd, Error> {
    let deadline = tokio::time::Instant::now() + READER_WAIT;
    let mut pause = Duration::from_millis(1);
    loop {
        match OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
        {
            Ok(probe) => {
                let fd = open_fifo(path);
                drop(probe);
                return fd;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                if tokio::time::Instant::now() >= deadline {
                    log::warn!("no reader on {path} after {READER_WAIT:?}");
                    return open_fifo(path);
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(e) => return Err(Error::io(format!("open {path}"), e)),
        }
    }
}

/// An output target: a `file://` URI or a FIFO.
async fn open_output(path: &str) -> Result<OwnedFd, Error> {
    match path.strip_prefix("file://") {
        Some(file) => open_file(&decode(
            file.split_once('?').map_or(file, |(p, _)| p),
            false,
        )),
        None => open_output_fifo(path).await,
    }
}

/// Percent-decodes a URI component as Go's net/url does for containerd's log
/// URIs; in a query, `+` stands for a space.
fn decode(text: &str, query: bool) -> String {
    let text = if query {
        std::borrow::Cow::Owned(text.replace('+', " "))
    } else {
        std::borrow::Cow::Borrowed(text)
    };
    percent_encoding::percent_decode_str(&text)
        .decode_utf8_lossy()
        .into_owned()
}

/// The program and arguments of a `binary://PATH?KEY=VALUE&...` URI: each
/// key, then its value unless empty, in the URI's order.
fn logger_command(uri: &str) -> (String, Vec<String>) {
    let rest = uri.trim_start_matches("binary://");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut args = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        args.push(decode(k, true));
        if !v.is_empty() {
            args.push(decode(v, true));
        }
    }
    (decode(path, false), args)
}

fn set_nonblocking(fd: &OwnedFd) -> Result<(), Error> {
    crate::oci::console::set_nonblocking(fd.as_fd()).map_err(|e| Error::io("fcntl", e.into()))
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Error> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::io("pipe", e.into()))
}

/// Registers `fd` with tokio's reactor.
pub fn async_fd(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns the OwnedFd, so the descriptor stays open for
    // as long as it is registered.
    unsafe { AsyncFd::register(fd) }.map_err(std::io::Error::from)
}

/// Copies `from` to `to` until `from` ends (EOF, or EIO from a terminal
/// master whose last slave closed) or `to` fails (its reader is gone).
async fn pump(from: OwnedFd, to: OwnedFd) {
    if set_nonblocking(&from).is_err() || set_nonblocking(&to).is_err() {
        return;
    }
    let (Ok(from), Ok(to)) = (async_fd(from), async_fd(to)) else {
        return;
    };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let Ok(mut guard) = from.readable().await else {
            return;
        };
        let n = match guard
            .try_io(|fd| nix::unistd::read(fd.as_raw_fd(), &mut buf).map_err(std::io::Error::from))
        {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => n,
            Err(_would_block) => continue,
        };
        let mut done = 0;
        while done < n {
            let Ok(mut w) = to.writable().await else {
                return;
            };
            match w.try_io(|fd| {
                nix::unistd::write(fd.get_ref().as_fd(), &buf[done..n])
                    .map_err(std::io::Error::from)
            }) {
                Ok(Ok(k)) => done += k,
                Ok(Err(_)) => return,
                Err(_would_block) => continue,
            }
        }
    }
}

/// Starts the logging binary of a `binary://` URI with the read ends of the
/// container's stdout and stderr as its fds 3 and 4, and waits (without
/// blocking the shim, at most LOGGER_WAIT) until it closes fd 5 (ready), as
/// containerd's shims do.
async fn start_logger(
    uri: &str,
    id: &str,
    namespace: &str,
    reaper: &Reaper,
) -> Result<(OwnedFd, OwnedFd), Error> {
    let (path, args) = logger_command(uri);
    let mut cmd = Command::new(&path);
    cmd.args(&args);
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (ready_r, ready_w) = pipe()?;
    let fds = [out_r.as_raw_fd(), err_r.as_raw_fd(), ready_w.as_raw_fd()];
    cmd.env("CONTAINER_ID", id)
        .env("CONTAINER_NAMESPACE", namespace)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    use std::os::unix::process::CommandExt;
    // SAFETY: only dup2 (async-signal-safe) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for (i, fd) in fds.iter().enumerate() {
                if libc::dup2(*fd, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let (pid, _exit) = reaper
        .spawn(&mut cmd)
        .map_err(|e| Error::io(format!("cannot start logging binary {path}"), e))?;
    drop(cmd);
    drop((out_r, err_r, ready_w));
    set_nonblocking(&ready_r)?;
    let ready = async_fd(ready_r).map_err(|e| Error::io("logger ready pipe", e))?;
    // Readable once the logger closes fd 5 (EOF) or exits.
    if tokio::time::timeout(LOGGER_WAIT, ready.readable())
        .await
        .is_err()
    {
        // SAFETY: plain kill of our own child, which has not exited (fd 5 is open).
        unsafe { libc::kill(pid, libc::SIGKILL) };
        return Err(Error::Other(format!(
            "logging binary {path} did not close fd 5 (ready) within {LOGGER_WAIT:?}"
        )));
    }
    Ok((out_w, err_w))
}

fn dev_null() -> Result<OwnedFd, Error> {
    OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .map(OwnedFd::from)
        .map_err(|e| Error::io("open /dev/null", e))
}

/// Opens what `paths` names; returns the child's stdio and what to keep. A
/// stream containerd did not name is /dev/null (containerd's NullIO). For a
/// terminal, the child gets no stdio: the console socket brings the master,
/// and `attach_console` starts the copies.
pub async fn open_streams(
    paths: &IoPaths,
    id: &str,
    namespace: &str,
    reaper: &Reaper,
) -> Result<(ChildStdio, Streams), Error> {
    let mut child = ChildStdio::default();
    let mut kept = Streams::default();
    if paths.terminal {
        return Ok((child, kept));
    }
    if !paths.stdin.is_empty() {
        let (fifo, writer) = open_stdin_fifo(&paths.stdin)?;
        let (r, w) = pipe()?;
        kept.stdin_writer = Some(writer);
        kept.stdin_copy = Some(tokio::spawn(pump(fifo, w)));
        child.stdin = Some(r);
    }
    if paths.stdout.starts_with("binary://") {
        let (out, err) = start_logger(&paths.stdout, id, namespace, reaper).await?;
        child.stdout = Some(out);
        child.stderr = Some(err);
        return Ok((child, kept));
    }
    let stdout = if paths.stdout.is_empty() {
        dev_null()?
    } else {
        open_output(&paths.stdout).await?
    };
    child.stderr = Some(if paths.stderr.is_empty() {
        dev_null()?
    } else if paths.stderr == paths.stdout {
        stdout.try_clone().map_err(|e| Error::io("dup", e))?
    } else {
        open_output(&paths.stderr).await?
    });
    child.stdout = Some(stdout);
    Ok((child, kept))
}

/// Copies between the terminal master and the FIFOs (output first).
async fn attach_console(paths: &IoPaths, master: OwnedFd) -> Result<Streams, Error> {
    let master = Arc::new(master);
    let mut kept = Streams::default();
    if !paths.stdout.is_empty() {
        let out = open_output(&paths.stdout).await?;
        let from = master.try_clone().map_err(|e| Error::io("dup", e))?;
        kept.copies.push(tokio::spawn(pump(from, out)));
    }
    if !paths.stdin.is_empty() {
        let (fifo, writer) = open_stdin_fifo(&paths.stdin)?;
        let to = master.try_clone().map_err(|e| Error::io("dup", e))?;
        kept.stdin_writer = Some(writer);
        kept.stdin_copy = Some(tokio::spawn(pump(fifo, to)));
    }
    kept.console = Some(master);
    Ok(kept)
}

impl Streams {
    /// CloseIO: the process sees EOF on stdin once the client has closed
    /// its end too and what it wrote has been copied.
    pub fn close_stdin(&mut self) {
        self.stdin_writer = None;
    }

    /// Waits (a bounded time) for the output copies, so that everything the
    /// process wrote is in the FIFO before its exit is reported.
    pub async fn drain(&mut self) {
        for copy in self.copies.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(2), copy).await;
        }
        self.close_stdin();
    }

    /// ResizePty.
    pub fn resize(&self, width: u32, height: u32) -> Result<(), Error> {
        // As containerd's runc shim: nothing to resize without a terminal.
        let Some(master) = &self.console else {
            return Ok(());
        };
        let ws = libc::winsize {
            ws_row: height as u16,
            ws_col: width as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize from the pointer.
        if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
            return Err(Error::io(
                "resize terminal",
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        // A client may hold the stdin FIFO open after the process is gone.
        if let Some(copy) = self.stdin_copy.take() {
            copy.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logger_uri_is_decoded_in_order() {
        let (path, args) =
            logger_command("binary:///opt/my%20logger?dir=%2Fvar%2Flog&tag=a+b%26c&-v&empty=");
        assert_eq!(path, "/opt/my logger");
        assert_eq!(args, ["dir", "/var/log", "tag", "a b&c", "-v", "empty"]);
        let (path, args) = logger_command("binary:///usr/bin/logger");
        assert_eq!(path, "/usr/bin/logger");
        assert!(args.is_empty());
    }

    #[test]
    fn file_uri_path_is_decoded_and_plus_kept() {
        assert_eq!(decode("/var/log/a%20b+c.log", false), "/var/log/a b+c.log");
        assert_eq!(decode("a+b%2B", true), "a b+");
    }
}
