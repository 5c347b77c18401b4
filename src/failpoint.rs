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
//! A point that is passed many times (once per pack, per file) acts every
//! time unless counted: `24*off->1*return(stop)` lets 24 passes go by,
//! stops on the 25th, and is off afterwards.
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

#[cfg(feature = "failpoints")]
fn act(name: &str, action: &str) -> Result<()> {
    use rustix::process::{Signal, getpid, kill_process};
    match action {
        "stop" => {
            // Sent to this thread's ID, not the process's: the kernel then
            // wakes this thread for it, and the whole process stops before
            // `kill` returns here. Sent to the process ID, the signal may be
            // taken by another thread (the main one, idle in a pool), and
            // this thread would run on past the point until that thread
            // stopped everyone: the test would act while the operation
            // still goes on.
            let _ = kill_process(rustix::thread::gettid(), Signal::STOP);
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
