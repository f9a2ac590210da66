//! seccomp as runc loads it: profiles whose default is an errno (with or
//! without `defaultErrnoRet`, with or without no_new_privs) load; syscalls
//! newer than the profile answer ENOSYS (runc's patchbpf), for the init and
//! for exec; SCMP_ACT_NOTIFY hands the listener its descriptor and the state.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;
use crate::conformance_mounts::{stderr, Rt};

/// A static program that calls each syscall number given (with -1 and zeros
/// as arguments) and prints `nr=errno` (0 when it succeeded).
fn probe(env: &TestEnv) -> PathBuf {
    let src = env.work.path().join("probe.c");
    std::fs::write(
        &src,
        r#"#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        long nr = atol(argv[i]);
        long rc = syscall(nr, -1L, 0L, 0L, 0L, 0L, 0L);
        printf("%ld=%d ", nr, rc < 0 ? errno : 0);
    }
    printf("\n");
    return 0;
}
"#,
    )
    .unwrap();
    let bin = env.work.path().join("probe");
    let out = output_of(
        Command::new("cc")
            .args(["-static", "-O2", "-o"])
            .arg(&bin)
            .arg(&src),
    );
    assert!(out.status.success(), "cc: {}", stderr(&out));
    bin
}

/// Every x86_64 syscall up to rseq (334) but getpgrp (111): the highest the
/// profile names is 334; pidfd_open (434) and 999 are newer than the profile.
fn profile(default: Value) -> Value {
    let names: Vec<String> = (0..=334)
        .filter(|nr| *nr != 111)
        .filter_map(|nr| {
            libseccomp::ScmpSyscall::from(nr)
                .get_name_by_arch(libseccomp::ScmpArch::X8664)
                .ok()
        })
        .collect();
    let mut p = default;
    p["architectures"] = json!(["SCMP_ARCH_X86_64"]);
    p["syscalls"] = json!([{ "names": names, "action": "SCMP_ACT_ALLOW" }]);
    p
}

fn with_probe(
    env: &TestEnv,
    id: &str,
    probe: &Path,
    args: &[&str],
    seccomp: &Value,
    nnp: bool,
) -> Value {
    let mut config = env.config(id, args);
    config["linux"]["seccomp"] = seccomp.clone();
    config["process"]["noNewPrivileges"] = json!(nnp);
    config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/tmp/probe", "type": "bind", "source": probe, "options": ["rbind", "ro"]
    }));
    config
}

#[test]
fn errno_profiles_load_and_newer_syscalls_get_enosys() {
    let env = TestEnv::new("seccomp-enosys");
    let probe = probe(&env);
    let calls = ["/tmp/probe", "111", "434", "999", "39"];
    for (default, errno) in [
        (json!({ "defaultAction": "SCMP_ACT_ERRNO" }), 1),
        (
            json!({ "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 13 }),
            13,
        ),
    ] {
        let seccomp = profile(default);
        let expected = format!("111={errno} 434=38 999=38 39=0");
        for nnp in [false, true] {
            for rt in [Rt::Runc, Rt::Peapod] {
                // The init runs the probe...
                let id = rt.id(&env, &format!("init-{errno}-{nnp}"));
                let config = with_probe(&env, &id, &probe, &calls, &seccomp, nnp);
                let bundle = env.bundle(&id, &config);
                let out = rt.cmd(&env, &["run", "--bundle", bundle.to_str().unwrap(), &id]);
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(out.status.success(), "{rt:?} nnp {nnp}: {}", stderr(&out));
                assert_eq!(text.trim(), expected, "{rt:?} init, nnp {nnp}, {seccomp}");

                // ...and so does an exec.
                let id = rt.id(&env, &format!("exec-{errno}-{nnp}"));
                let config = with_probe(&env, &id, &probe, &["sleep", "1000"], &seccomp, nnp);
                let out = rt.run_detached(&env, &id, &config);
                assert!(out.status.success(), "{rt:?}: {}", stderr(&out));
                let out = rt.cmd(
                    &env,
                    &["exec", &id, "/tmp/probe", "111", "434", "999", "39"],
                );
                rt.remove(&env, &id);
                let text = String::from_utf8_lossy(&out.stdout);
                assert_eq!(
                    text.trim(),
                    expected,
                    "{rt:?} exec, nnp {nnp}: {}",
                    stderr(&out)
                );
            }
        }
    }
    env.finish();
}

/// The listener side of SCMP_ACT_NOTIFY: takes the descriptor and the state,
/// answers every notification with EXDEV until the filter goes.
fn listen(path: &Path) -> std::thread::JoinHandle<(Value, usize)> {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 65536];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 4]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = nix::sys::socket::recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            nix::sys::socket::MsgFlags::empty(),
        )
        .unwrap();
        let mut fd = None;
        for c in msg.cmsgs().unwrap() {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
                // SAFETY: the kernel just gave us this descriptor.
                fd = Some(unsafe { OwnedFd::from_raw_fd(fds[0]) });
            }
        }
        let len = msg.bytes;
        let state: Value = serde_json::from_slice(&buf[..len]).unwrap();
        let fd = fd.expect("no descriptor");
        let mut answered = 0;
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            let mut pfd = [nix::poll::PollFd::new(
                std::os::fd::AsFd::as_fd(&fd),
                nix::poll::PollFlags::POLLIN,
            )];
            if nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(200u16)).unwrap_or(0) == 0 {
                if answered > 0 {
                    break;
                }
                continue;
            }
            // SAFETY: the ioctls read and write structs we own, of the kernel's layout.
            unsafe {
                let mut req: libc::seccomp_notif = std::mem::zeroed();
                if libc::ioctl(fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, &mut req) != 0 {
                    break;
                }
                let mut resp: libc::seccomp_notif_resp = std::mem::zeroed();
                resp.id = req.id;
                resp.error = -libc::EXDEV;
                libc::ioctl(fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp);
            }
            answered += 1;
        }
        (state, answered)
    })
}

#[test]
fn notify_hands_the_listener_the_init_descriptor_and_state() {
    let env = TestEnv::new("seccomp-notify");
    for rt in [Rt::Runc, Rt::Peapod] {
        let sock = env.work.path().join(format!("listener-{}.sock", rt.name()));
        let listener = listen(&sock);
        let id = rt.id(&env, "n");
        let mut config = env.config(
            &id,
            &[
                "sh",
                "-c",
                "mkdir /tmp/x; echo rc=$?; test -d /tmp/x || echo absent",
            ],
        );
        config["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": sock,
            "listenerMetadata": "meta",
            "syscalls": [{ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY" }]
        });
        let bundle = env.bundle(&id, &config);
        let b = bundle.to_str().unwrap();
        let out = rt.cmd(&env, &["run", "--bundle", b, &id]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (state, answered) = listener.join().unwrap();
        assert!(out.status.success(), "{rt:?}: {}", stderr(&out));
        assert!(
            text.contains("rc=1") && text.contains("absent"),
            "{rt:?}: {text} {}",
            stderr(&out)
        );
        assert!(answered >= 1, "{rt:?}: no notification");
        assert_eq!(state["fds"], json!(["seccompFd"]), "{rt:?}: {state}");
        assert_eq!(state["metadata"], "meta", "{rt:?}: {state}");
        assert_eq!(state["state"]["id"], id.as_str(), "{rt:?}: {state}");
        assert_eq!(state["state"]["bundle"], b, "{rt:?}: {state}");
        assert!(state["pid"].as_i64().unwrap() > 0, "{rt:?}: {state}");
    }
    env.finish();
}
