//! Giving back the code pages a long-lived process no longer needs.
//!
//! A pod supervisor runs a lot of code once (argument parsing, admission, OCI
//! specs, mounts) and then sleeps in poll() for the life of the pod, waking for
//! a few lines of log or an exit. The kernel maps file pages around every fault
//! (64 KiB at a time), so the setup leaves megabytes of the binary and of libc
//! mapped. `release_code_pages` unmaps the read-only segments of every loaded
//! object; what the process runs next is faulted back in from the page cache.
//!
//! Only segments without write permission are touched. Those are never
//! modified after loading (relocated data, RELRO, lives in writable segments),
//! so unmapping loses nothing: MADV_DONTNEED on a clean private file mapping
//! just drops the page table entries.

use std::ffi::CStr;

/// Unmaps the read-only (code and constant) pages of the program and its shared
/// libraries. Returns how many bytes of address space were advised.
pub fn release_code_pages() -> usize {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    // SAFETY: the callback only reads the headers the loader hands it, during the call.
    unsafe {
        libc::dl_iterate_phdr(
            Some(collect_read_only_segments),
            &mut ranges as *mut Vec<(usize, usize)> as *mut libc::c_void,
        );
    }
    let mut advised = 0;
    for (start, len) in ranges {
        // SAFETY: the range is a read-only, file-backed segment of a loaded
        // object; dropping its clean pages only costs a later page fault.
        if unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) } == 0 {
            advised += len;
        }
    }
    advised
}

unsafe extern "C" fn collect_read_only_segments(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: dl_iterate_phdr passes a valid info and our Vec as data.
    let (info, ranges) = unsafe { (&*info, &mut *(data as *mut Vec<(usize, usize)>)) };
    if !info.dlpi_name.is_null() {
        // SAFETY: the loader's name strings are NUL-terminated.
        let name = unsafe { CStr::from_ptr(info.dlpi_name) }.to_bytes();
        // The vDSO is the kernel's, not a file mapping.
        if name.starts_with(b"linux-vdso") || name.starts_with(b"linux-gate") {
            return 0;
        }
    }
    if info.dlpi_phdr.is_null() {
        return 0;
    }
    // SAFETY: dlpi_phdr points to dlpi_phnum program headers.
    let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
    let page = page_size();
    for h in headers {
        if h.p_type != libc::PT_LOAD || h.p_flags & libc::PF_W != 0 || h.p_memsz == 0 {
            continue;
        }
        let start = info.dlpi_addr as usize + h.p_vaddr as usize;
        let end = start + h.p_memsz as usize;
        let start = start & !(page - 1);
        let end = (end + page - 1) & !(page - 1);
        ranges.push((start, end - start));
    }
    0
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resident_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("RssFile:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    #[test]
    fn code_pages_go_and_the_program_keeps_running() {
        let before = resident_kib();
        let advised = release_code_pages();
        let after = resident_kib();
        // The test binary's own code is far larger than a page.
        assert!(advised > 1 << 20, "advised only {advised} bytes");
        assert!(
            after < before,
            "file-backed RSS {before} KiB -> {after} KiB"
        );
        // Code, constants and relocated data still work after the pages went.
        let text = format!("{:?}", std::collections::BTreeMap::from([(1, "one")]));
        assert_eq!(text, r#"{1: "one"}"#);
    }
}
