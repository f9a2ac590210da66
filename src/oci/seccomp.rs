//! The container's seccomp filter, built and loaded by peapod as runc does:
//! libseccomp compiles `linux.seccomp`, and (runc's patchbpf) a stub in front
//! of it answers ENOSYS for syscalls newer than the profile, that is numbered
//! above the highest syscall the profile names, instead of the default errno:
//! programs (glibc among them) fall back from a new syscall on ENOSYS, not on
//! EPERM. libseccomp alone cannot say that (it only knows syscalls by the
//! names in its own table), so libcontainer's loader is not used: the init
//! loads the filter from peapod's executor (init.rs), `exec` from enter.rs.
//!
//! The stub covers the native architecture (x86_64); x32 syscalls (bit 30)
//! and other architectures go straight to the profile's filter.

use std::io::{Read, Seek, Write};
use std::os::fd::{FromRawFd, OwnedFd};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

/// A compiled filter: the BPF program and the seccomp(2) flags to load it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub program: Vec<libc::sock_filter>,
    pub flags: libc::c_ulong,
    /// SCMP_ACT_NOTIFY is used: loading returns a listener descriptor.
    pub notify: bool,
}

const SECCOMP_FILTER_FLAG_TSYNC: libc::c_ulong = 1;
const SECCOMP_FILTER_FLAG_LOG: libc::c_ulong = 2;
const SECCOMP_FILTER_FLAG_SPEC_ALLOW: libc::c_ulong = 4;
const SECCOMP_FILTER_FLAG_NEW_LISTENER: libc::c_ulong = 8;
const SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: libc::c_ulong = 32;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Compiles `seccomp` into a filter (nothing is loaded).
pub fn build(seccomp: &LinuxSeccomp) -> Result<Filter, String> {
    check(seccomp)?;
    let default = action(seccomp.default_action(), seccomp.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| format!("linux.seccomp: {e}"))?;
    // no_new_privs is the spec's to set (process.noNewPrivileges), not libseccomp's.
    ctx.set_ctl_nnp(false)
        .map_err(|e| format!("linux.seccomp: {e}"))?;
    for &arch in seccomp.architectures().iter().flatten() {
        ctx.add_arch(translate_arch(arch))
            .map_err(|e| format!("linux.seccomp.architectures {arch:?}: {e}"))?;
    }
    let mut highest: Option<u32> = None;
    for (i, rule) in seccomp.syscalls().iter().flatten().enumerate() {
        let act = action(rule.action(), rule.errno_ret())?;
        for name in rule.names() {
            // A name this libseccomp does not know is skipped, as runc and
            // libcontainer skip it (the kernel may not have it either).
            let Ok(sc) = ScmpSyscall::from_name(name) else {
                continue;
            };
            if let Ok(native) = ScmpSyscall::from_name_by_arch(name, ScmpArch::X8664) {
                let nr = i32::from(native);
                if nr >= 0 {
                    highest = highest.max(Some(nr as u32));
                }
            }
            if act == default {
                continue;
            }
            add_rule(&mut ctx, act, sc, rule.args().as_deref().unwrap_or(&[]))
                .map_err(|e| format!("linux.seccomp.syscalls[{i}] {name}: {e}"))?;
        }
    }
    let mut flags = 0;
    for flag in seccomp.flags().iter().flatten() {
        flags |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
            }
        };
    }
    let notify = uses_notify(seccomp);
    if notify {
        flags |= SECCOMP_FILTER_FLAG_NEW_LISTENER;
    }
    let mut program = export(&ctx)?;
    let allows = matches!(
        seccomp.default_action(),
        LinuxSeccompAction::ScmpActAllow | LinuxSeccompAction::ScmpActLog
    );
    let enosys_default = seccomp.default_action() == LinuxSeccompAction::ScmpActErrno
        && seccomp.default_errno_ret() == Some(libc::ENOSYS as u32);
    if let (false, false, Some(highest)) = (allows, enosys_default, highest) {
        let mut patched = enosys_stub(highest);
        patched.append(&mut program);
        program = patched;
    }
    Ok(Filter {
        program,
        flags,
        notify,
    })
}

/// Loads `filter` on the calling thread: without no_new_privs this needs
/// CAP_SYS_ADMIN. Returns the listener descriptor of a notify filter.
pub fn load(filter: &Filter) -> Result<Option<OwnedFd>, String> {
    let prog = libc::sock_fprog {
        len: filter.program.len() as libc::c_ushort,
        filter: filter.program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: seccomp(2) reads the program the sock_fprog points to, which
    // lives across the call; it returns a descriptor or 0.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            filter.flags,
            &prog as *const libc::sock_fprog,
        )
    };
    if rc < 0 {
        return Err(format!(
            "linux.seccomp: load the filter: {}",
            std::io::Error::last_os_error()
        ));
    }
    if filter.notify {
        // SAFETY: with NEW_LISTENER the kernel returned a new descriptor we own.
        return Ok(Some(unsafe { OwnedFd::from_raw_fd(rc as i32) }));
    }
    Ok(None)
}

/// Whether any rule of `seccomp` notifies a listener.
pub fn uses_notify(seccomp: &LinuxSeccomp) -> bool {
    seccomp
        .syscalls()
        .iter()
        .flatten()
        .any(|s| s.action() == LinuxSeccompAction::ScmpActNotify)
}

/// runc's patch: for native syscalls numbered above `highest`, ENOSYS.
fn enosys_stub(highest: u32) -> Vec<libc::sock_filter> {
    let ins = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let ld_abs = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let jeq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let jge = libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K;
    let jgt = libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K;
    let ret = libc::BPF_RET | libc::BPF_K;
    vec![
        // seccomp_data.arch; another architecture goes to the filter (index 6).
        ins(ld_abs, 0, 0, 4),
        ins(jeq, 0, 4, AUDIT_ARCH_X86_64),
        // seccomp_data.nr; x32 goes to the filter.
        ins(ld_abs, 0, 0, 0),
        ins(jge, 2, 0, X32_SYSCALL_BIT),
        ins(jgt, 0, 1, highest),
        ins(ret, 0, 0, SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
    ]
}

/// The BPF program libseccomp generates, read back through a memory file.
fn export(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>, String> {
    // SAFETY: the name is a NUL-terminated literal; the result is checked.
    let fd = unsafe { libc::memfd_create(c"seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: memfd_create returned this descriptor; nothing else owns it.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    ctx.export_bpf(&file)
        .map_err(|e| format!("linux.seccomp: export the filter: {e}"))?;
    let mut bytes = vec![];
    file.flush()
        .and_then(|()| file.rewind())
        .and_then(|()| file.read_to_end(&mut bytes))
        .map_err(|e| format!("linux.seccomp: read the filter: {e}"))?;
    Ok(bytes
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

fn add_rule(
    ctx: &mut ScmpFilterContext,
    act: ScmpAction,
    sc: ScmpSyscall,
    args: &[oci_spec::runtime::LinuxSeccompArg],
) -> Result<(), libseccomp::error::SeccompError> {
    let compare: Vec<ScmpArgCompare> = args
        .iter()
        .map(|a| ScmpArgCompare::new(a.index() as u32, op(a.op(), a.value_two()), a.value()))
        .collect();
    let mut indexes: Vec<u32> = args.iter().map(|a| a.index() as u32).collect();
    indexes.sort_unstable();
    indexes.dedup();
    if compare.is_empty() {
        ctx.add_rule(act, sc)?;
    } else if indexes.len() == compare.len() {
        ctx.add_rule_conditional(act, sc, &compare)?;
    } else {
        // libseccomp compares an argument once per rule: one rule each (runc).
        for c in &compare {
            ctx.add_rule_conditional(act, sc, std::slice::from_ref(c))?;
        }
    }
    Ok(())
}

/// runc's and libcontainer's refusals: a notify default, or notifying on
/// `write` (the listener could then never be told about the descriptor).
fn check(seccomp: &LinuxSeccomp) -> Result<(), String> {
    if seccomp.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err("linux.seccomp.defaultAction: SCMP_ACT_NOTIFY is not allowed".into());
    }
    for (i, rule) in seccomp.syscalls().iter().flatten().enumerate() {
        if rule.action() == LinuxSeccompAction::ScmpActNotify
            && rule.names().iter().any(|n| n == "write")
        {
            return Err(format!(
                "linux.seccomp.syscalls[{i}]: SCMP_ACT_NOTIFY on write is not allowed"
            ));
        }
    }
    Ok(())
}

fn action(action: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction, String> {
    let errno = errno.map_or(libc::EPERM, |e| e as i32);
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(
            u16::try_from(errno)
                .map_err(|_| format!("linux.seccomp: SCMP_ACT_TRACE errno {errno}"))?,
        ),
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
    })
}

fn op(op: LinuxSeccompOperator, value_two: Option<u64>) -> ScmpCompareOp {
    match op {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(value_two.unwrap_or(0)),
    }
}

fn translate_arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).unwrap()
    }

    /// Loads `filter` in a forked child (with no_new_privs, so no privilege
    /// is needed) and returns what `syscall(nr)` gave there: 0 or the errno.
    fn errno_in_child(filter: &Filter, nr: libc::c_long) -> i32 {
        // SAFETY: the child makes system calls only, then _exits.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let code = (|| {
                    nix::sys::prctl::set_no_new_privs().ok()?;
                    load(filter).ok()?;
                    // SAFETY: a syscall with no pointer arguments.
                    let rc = unsafe { libc::syscall(nr, -1, 0, 0, 0) };
                    Some(if rc < 0 {
                        std::io::Error::last_os_error().raw_os_error()?
                    } else {
                        0
                    })
                })()
                .unwrap_or(255);
                // SAFETY: leave the forked test child at once.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                match nix::sys::wait::waitpid(child, None).unwrap() {
                    nix::sys::wait::WaitStatus::Exited(_, code) => code,
                    other => panic!("child: {other:?}"),
                }
            }
        }
    }

    /// A profile that allows every syscall this program may need up to
    /// `getppid` (110), and names `acct` (163) with an errno of its own.
    fn low_profile(default: &str) -> LinuxSeccomp {
        let names: Vec<String> = (0..=110)
            .filter_map(|nr| ScmpSyscall::from(nr).get_name_by_arch(ScmpArch::X8664).ok())
            .collect();
        profile(&format!(
            r#"{{{default}, "syscalls": [{{"names": {}, "action": "SCMP_ACT_ALLOW"}},
                {{"names": ["acct"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22}}]}}"#,
            serde_json::to_string(&names).unwrap()
        ))
    }

    #[test]
    fn newer_syscalls_get_enosys_older_ones_the_default() {
        for (default, errno) in [
            (r#""defaultAction": "SCMP_ACT_ERRNO""#, libc::EPERM),
            (
                r#""defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 13"#,
                libc::EACCES,
            ),
        ] {
            let filter = build(&low_profile(default)).unwrap();
            assert!(!filter.notify);
            assert_eq!(filter.program[..6], enosys_stub(163)[..]);
            // Named: its own errno. Not named, below the highest: the default.
            assert_eq!(errno_in_child(&filter, libc::SYS_acct), libc::EINVAL);
            assert_eq!(errno_in_child(&filter, libc::SYS_getpgrp), errno);
            // Above the highest named: ENOSYS, known to libseccomp or not.
            assert_eq!(errno_in_child(&filter, libc::SYS_pidfd_open), libc::ENOSYS);
            assert_eq!(errno_in_child(&filter, 999), libc::ENOSYS);
            // Allowed: it runs (getppid never fails).
            assert_eq!(errno_in_child(&filter, libc::SYS_getppid), 0);
        }
    }

    #[test]
    fn permissive_or_enosys_defaults_are_not_patched() {
        for default in [
            r#""defaultAction": "SCMP_ACT_ALLOW""#,
            r#""defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38"#,
        ] {
            let filter = build(&low_profile(default)).unwrap();
            assert_ne!(filter.program[..6], enosys_stub(163)[..], "{default}");
        }
    }

    #[test]
    fn notify_flags_and_refusals() {
        let p = profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG"],
                "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}"#,
        );
        let filter = build(&p).unwrap();
        assert!(filter.notify);
        assert_eq!(
            filter.flags,
            SECCOMP_FILTER_FLAG_LOG | SECCOMP_FILTER_FLAG_NEW_LISTENER
        );
        let err = build(&profile(r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#)).unwrap_err();
        assert!(err.contains("defaultAction"), "{err}");
        let err = build(&profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["write"], "action": "SCMP_ACT_NOTIFY"}]}"#,
        ))
        .unwrap_err();
        assert!(err.contains("syscalls[0]"), "{err}");
    }
}
