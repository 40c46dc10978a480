//! Process limits the broker depends on.

#[derive(Debug, Clone, Copy)]
pub struct OpenFileLimit {
    pub soft: u64,
    pub hard: u64,
}

/// Raises the soft RLIMIT_NOFILE to the hard limit: every client is a file
/// descriptor, and distributions default the soft limit to 1024.
pub fn raise_open_file_limit() -> OpenFileLimit {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return OpenFileLimit { soft: 0, hard: 0 };
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        OpenFileLimit { soft: lim.rlim_cur, hard: lim.rlim_max }
    }
}
