//! Test-only interleaving points.
//!
//! Races (a prune between a backup's last pack and its snapshot, a file
//! rewritten between two reads, a process killed mid-commit) are tested by
//! stopping Cairn at a named point, acting, and letting it go on — never by
//! sleeping and hoping the window is hit. A point costs nothing unless the
//! crate is built with the `failpoints` feature, which only the test suite
//! enables (`Cargo.toml` dev-dependencies).
//!
//! With the feature, points are configured through the `fail` crate: the
//! `FAILPOINTS` environment variable of the `cairn` binary
//! (`FAILPOINTS='backup::before_snapshot=return(stop)'`), or `fail::cfg` and
//! `fail::cfg_callback` in a test that runs the library in-process. A point
//! configured with `return(ACTION)` acts:
//!
//! | action | effect |
//! |---|---|
//! | `stop` | the process stops itself with `SIGSTOP`; the test waits for the stopped state, acts, and sends `SIGCONT` |
//! | `kill` | the process kills itself with `SIGKILL` (a crash: no destructor, no cleanup) |
//! | `error` | the operation fails here with an I/O error |
//!
//! Never touches: anything else. Points are named `module::place`.

use crate::error::Result;

/// Evaluate the point `name`; see the module documentation.
#[inline]
pub fn hit(name: &str) -> Result<()> {
    #[cfg(feature = "failpoints")]
    if let Some(action) = fail::eval(name, |arg| arg.unwrap_or_default()) {
        return act(name, &action);
    }
    let _ = name;
    Ok(())
}

/// Stop the process with the calling thread stopped at the point. A
/// `SIGSTOP` sent to the process is taken by any of its threads (often the
/// main one), which stops the others a moment later: the calling thread
/// would run on past the point meanwhile. A `SIGSTOP` sent to this thread
/// (through a thread pidfd, Linux 6.9 and later) is taken on the way out of
/// the sending call, and stops the others too.
#[cfg(feature = "failpoints")]
fn stop_this_thread() {
    use rustix::process::{Pid, PidfdFlags, Signal, kill_process, pidfd_open, pidfd_send_signal};
    /// `PIDFD_THREAD` (= `O_EXCL`): a pidfd for one thread.
    const PIDFD_THREAD: u32 = 0o200;
    let tid = std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse::<i32>().ok())
        .and_then(Pid::from_raw);
    let sent = tid
        .and_then(|t| pidfd_open(t, PidfdFlags::from_bits_retain(PIDFD_THREAD)).ok())
        .is_some_and(|fd| pidfd_send_signal(&fd, Signal::STOP).is_ok());
    if !sent {
        // Older kernels: sent to this thread's ID, the kernel still prefers
        // this thread for it.
        let _ = kill_process(rustix::thread::gettid(), Signal::STOP);
    }
}

#[cfg(feature = "failpoints")]
fn act(name: &str, action: &str) -> Result<()> {
    use rustix::process::{Signal, getpid, kill_process};
    match action {
        "stop" => {
            stop_this_thread();
            Ok(())
        }
        "kill" => {
            let _ = kill_process(getpid(), Signal::KILL);
            Ok(())
        }
        "error" => Err(crate::error::Error::io(
            format!("failpoint {name}"),
            std::io::Error::other("injected failure"),
        )),
        _ => Ok(()),
    }
}

/// Read the `FAILPOINTS` environment variable (the binary calls this once
/// at start). Without the `failpoints` feature it does nothing.
pub fn setup_from_env() {
    #[cfg(feature = "failpoints")]
    {
        // The scenario holds a process-wide guard; it lives as long as the
        // process.
        std::mem::forget(fail::FailScenario::setup());
    }
}
