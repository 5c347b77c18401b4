//! `cairn mount`: browse the repository's snapshots as a read-only
//! filesystem (FUSE) until Ctrl-C, SIGTERM or `fusermount -u`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use cairn::ops::mount::{MountOptions, Unmounter};

use super::GlobalArgs;

/// Arguments of `cairn mount`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// An empty directory to mount the repository on.
    mountpoint: PathBuf,
    /// Let other users than the one who mounted read the mount (FUSE's
    /// allow_other; the snapshots' permission bits still apply; for a
    /// user other than root, /etc/fuse.conf must allow it).
    #[arg(long)]
    allow_other: bool,
    /// Memory kept for file content read through the mount, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    cache_size: u64,
}

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    // Before the passphrase is asked for.
    cairn::ops::mount::check_mountpoint(&a.mountpoint)?;
    let mut repo = g.open()?;
    let mut lock = repo.lock_shared()?;
    let lock_name = cairn::repo::lock::lock_name(&lock.held().id());
    let backend = Arc::clone(lock.backend());
    let index = lock.load_index()?;
    let opts = MountOptions {
        cache_bytes: a.cache_size.saturating_mul(1 << 20),
        allow_other: a.allow_other,
        ..MountOptions::default()
    };
    let shown = a.mountpoint.display().to_string();
    let mut signals = None;
    let mut on_mounted = |u: Unmounter| {
        if !g.quiet {
            eprintln!(
                "mounted the repository on {shown}; Ctrl-C, SIGTERM or `fusermount3 -u {shown}` unmounts it"
            );
        }
        signals = Some(unmount_on_signals(
            u,
            Arc::clone(&backend),
            lock_name.clone(),
        ));
    };
    let mounted = cairn::ops::mount::mount(&index, &a.mountpoint, &opts, &mut on_mounted);
    if let Some(Ok(h)) = signals {
        h.close();
    }
    mounted.with_context(|| format!("mount on {shown}"))?;
    Ok(super::exit::OK)
}

/// While mounted, SIGINT and SIGTERM unmount (the mount then ends as
/// `fusermount -u` ends it: exit 0, lock removed). A second signal, if
/// unmounting hangs, removes the lock object and ends the process.
fn unmount_on_signals(
    u: Unmounter,
    backend: Arc<dyn cairn::backend::Backend>,
    lock_name: String,
) -> std::io::Result<signal_hook::iterator::Handle> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("cairn-unmount".into())
        .spawn(move || {
            let mut seen = 0;
            for sig in signals.forever() {
                seen += 1;
                if seen == 1 {
                    if let Err(e) = u.unmount() {
                        eprintln!("cairn: {e}");
                    }
                } else {
                    let _ = backend.delete(&lock_name);
                    signal_hook::low_level::exit(128 + sig);
                }
            }
        })?;
    Ok(handle)
}
