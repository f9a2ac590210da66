//! The channel between `exec` and the child it forks: a SOCK_SEQPACKET pair,
//! close-on-exec on both ends, so the parent reads end-of-file exactly when the
//! child's execve succeeded, and a message when anything before it failed.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};

use crate::error::Context;
use crate::oci::error::{Error, Result};

/// What the child tells the parent before it runs the process.
#[derive(Debug)]
pub enum Message {
    /// A step failed: the process will not run.
    Failed(String),
    /// The master of the terminal the child made for the process.
    Terminal(OwnedFd),
    /// The seccomp notify descriptor, for the profile's listener.
    SeccompNotify(OwnedFd),
    /// Everything is set up; only joining the cgroup and execve remain (the
    /// cgroup may be frozen: a paused container's exec stops there).
    Ready,
}

const FAILED: u8 = b'E';
const TERMINAL: u8 = b'T';
const SECCOMP: u8 = b'S';
const READY: u8 = b'R';

pub struct Channel(OwnedFd);

/// Makes the two ends: the parent's and the child's.
pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context(|| "exec: socketpair".into())?;
    Ok((Channel(a), Channel(b)))
}

impl Channel {
    pub fn send(&self, message: &Message) -> Result<()> {
        let (tag, text, fd): (u8, &[u8], Option<RawFd>) = match message {
            Message::Failed(text) => (FAILED, text.as_bytes(), None),
            Message::Terminal(fd) => (TERMINAL, &[], Some(fd.as_raw_fd())),
            Message::SeccompNotify(fd) => (SECCOMP, &[], Some(fd.as_raw_fd())),
            Message::Ready => (READY, &[], None),
        };
        let mut payload = Vec::with_capacity(1 + text.len());
        payload.push(tag);
        payload.extend_from_slice(text);
        let iov = [IoSlice::new(&payload)];
        let fds = fd.map(|f| [f]);
        let cmsgs: Vec<ControlMessage> = fds.iter().map(|f| ControlMessage::ScmRights(f)).collect();
        sendmsg::<()>(self.0.as_raw_fd(), &iov, &cmsgs, MsgFlags::empty(), None)
            .context(|| "exec: send to parent".into())?;
        Ok(())
    }

    /// The next message; None once the other end is closed (the child's execve
    /// succeeded, or it died).
    pub fn receive(&self) -> Result<Option<Message>> {
        let mut buf = vec![0u8; 8192];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let (len, fd) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                self.0.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(msg) => {
                    let mut fd = None;
                    for cmsg in msg.cmsgs().context(|| "exec: read message".into())? {
                        if let ControlMessageOwned::ScmRights(fds) = cmsg {
                            for raw in fds {
                                // SAFETY: the kernel just installed this descriptor for us.
                                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                                fd.get_or_insert(owned);
                            }
                        }
                    }
                    break (msg.bytes, fd);
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => Err(e).context(|| "exec: receive from child".into())?,
            }
        };
        if len == 0 {
            return Ok(None);
        }
        let text = String::from_utf8_lossy(&buf[1..len]).into_owned();
        let need_fd = |fd: Option<OwnedFd>| {
            fd.ok_or_else(|| Error::Invalid("exec: message without its descriptor".into()))
        };
        Ok(Some(match buf[0] {
            FAILED => Message::Failed(text),
            TERMINAL => Message::Terminal(need_fd(fd)?),
            SECCOMP => Message::SeccompNotify(need_fd(fd)?),
            READY => Message::Ready,
            other => {
                return Err(Error::Invalid(format!(
                    "exec: unknown message {other} from child"
                )))
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_descriptors_cross_and_eof_ends() {
        let (parent, child) = pair().unwrap();
        child
            .send(&Message::Failed("cwd /x: no such directory".into()))
            .unwrap();
        let (r, _w) = nix::unistd::pipe().unwrap();
        child.send(&Message::Terminal(r)).unwrap();
        child.send(&Message::Ready).unwrap();
        drop(child);
        match parent.receive().unwrap() {
            Some(Message::Failed(t)) => assert_eq!(t, "cwd /x: no such directory"),
            other => panic!("{other:?}"),
        }
        match parent.receive().unwrap() {
            Some(Message::Terminal(fd)) => assert!(fd.as_raw_fd() > 2),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parent.receive().unwrap(), Some(Message::Ready)));
        assert!(parent.receive().unwrap().is_none());
    }
}
