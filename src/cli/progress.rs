//! Progress for long commands: a bar on a terminal, line-delimited JSON
//! status events for wrappers (`--progress json`), or nothing.
//!
//! Operations only bump counters (`Progress::advance`); a ticker thread turns
//! them into output ten times a second (a bar) or once a second (JSON), so
//! the worker threads never contend on a lock or a terminal.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::GlobalArgs;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A bar when standard output and standard error are terminals (and
    /// neither `--quiet` nor `--json` is given), else nothing.
    Auto,
    /// Line-delimited JSON status events on standard output.
    Json,
    /// Nothing.
    Off,
}

/// "Unknown" in the total counters.
const UNKNOWN: u64 = u64::MAX;

struct Shared {
    command: &'static str,
    phase: Mutex<String>,
    phase_started: Mutex<Instant>,
    items: AtomicU64,
    bytes: AtomicU64,
    items_total: AtomicU64,
    bytes_total: AtomicU64,
    /// `finish` has run.
    done: AtomicBool,
}

impl Shared {
    fn total(v: &AtomicU64) -> Option<u64> {
        match v.load(Relaxed) {
            UNKNOWN => None,
            n => Some(n),
        }
    }

    /// The current status as a JSON event.
    fn status(&self) -> serde_json::Value {
        let elapsed = self
            .phase_started
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default()
            .as_secs_f64();
        let bytes = self.bytes.load(Relaxed);
        let items = self.items.load(Relaxed);
        let bytes_total = Self::total(&self.bytes_total);
        let items_total = Self::total(&self.items_total);
        let fraction = match (bytes_total, items_total) {
            (Some(t), _) if t > 0 => Some((bytes as f64 / t as f64).min(1.0)),
            (_, Some(t)) if t > 0 => Some((items as f64 / t as f64).min(1.0)),
            _ => None,
        };
        let eta = fraction
            .filter(|f| *f > 0.0 && elapsed > 0.0)
            .map(|f| (elapsed / f - elapsed).max(0.0).round() as u64);
        serde_json::json!({
            "message_type": "status",
            "command": self.command,
            "phase": self.phase.lock().map(|p| p.clone()).unwrap_or_default(),
            "seconds_elapsed": (elapsed * 1000.0).round() / 1000.0,
            "items_done": items,
            "items_total": items_total,
            "bytes_done": bytes,
            "bytes_total": bytes_total,
            "percent_done": fraction.map(|f| (f * 10000.0).round() / 100.0),
            "eta_seconds": eta,
        })
    }
}

/// The progress sink commands hand to operations.
pub struct Reporter {
    mode: Mode,
    shared: Arc<Shared>,
    bar: Option<ProgressBar>,
    stop: Arc<AtomicBool>,
    ticker: Mutex<Option<JoinHandle<()>>>,
    /// Print per-entry warnings (off with --quiet or --json).
    warnings: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Off,
    Bar,
    Json,
}

impl Reporter {
    /// A reporter for `command`, as the global options ask.
    pub fn new(g: &GlobalArgs, command: &'static str) -> Reporter {
        let mode = match g.progress {
            ProgressMode::Off => Mode::Off,
            ProgressMode::Json => Mode::Json,
            ProgressMode::Auto => {
                if !g.quiet
                    && !g.json
                    && std::io::stdout().is_terminal()
                    && std::io::stderr().is_terminal()
                {
                    Mode::Bar
                } else {
                    Mode::Off
                }
            }
        };
        let shared = Arc::new(Shared {
            command,
            phase: Mutex::new(command.to_string()),
            phase_started: Mutex::new(Instant::now()),
            items: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            items_total: AtomicU64::new(UNKNOWN),
            bytes_total: AtomicU64::new(UNKNOWN),
            done: AtomicBool::new(false),
        });
        let bar = (mode == Mode::Bar).then(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.set_message(command);
            b
        });
        let r = Reporter {
            mode,
            shared,
            bar,
            stop: Arc::new(AtomicBool::new(false)),
            ticker: Mutex::new(None),
            warnings: !g.quiet && !g.json,
        };
        r.spawn_ticker();
        r
    }

    fn spawn_ticker(&self) {
        if self.mode == Mode::Off {
            return;
        }
        let shared = self.shared.clone();
        let stop = self.stop.clone();
        let bar = self.bar.clone();
        let mode = self.mode;
        let h = std::thread::Builder::new()
            .name("cairn-progress".into())
            .spawn(move || {
                let every = if mode == Mode::Json {
                    Duration::from_secs(1)
                } else {
                    Duration::from_millis(100)
                };
                let mut last = Instant::now();
                while !stop.load(Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                    if last.elapsed() < every {
                        continue;
                    }
                    last = Instant::now();
                    match (&bar, mode) {
                        (Some(b), _) => draw(b, &shared),
                        (None, Mode::Json) => emit(&shared.status()),
                        _ => {}
                    }
                }
            })
            .ok();
        *self.ticker.lock().unwrap_or_else(|p| p.into_inner()) = h;
    }

    /// Set the totals when they become known after the start (backup's
    /// scan of its sources).
    pub fn set_totals(&self, items: Option<u64>, bytes: Option<u64>) {
        self.shared
            .items_total
            .store(items.unwrap_or(UNKNOWN), Relaxed);
        self.shared
            .bytes_total
            .store(bytes.unwrap_or(UNKNOWN), Relaxed);
    }

    /// Stop the output: clear the bar, or emit the final status event.
    /// Call before printing the command's result.
    pub fn finish(&self) {
        if self.shared.done.swap(true, Relaxed) {
            return;
        }
        self.stop.store(true, Relaxed);
        if let Some(h) = self.ticker.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = h.join();
        }
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        if self.mode == Mode::Json {
            emit(&self.shared.status());
        }
    }

    /// Count sources in the background for a backup's totals (only when
    /// progress is shown). Symlinks are not followed; excludes are not
    /// applied, so the total is an upper bound.
    pub fn scan_sources(&self, paths: &[std::path::PathBuf]) {
        if self.mode == Mode::Off || paths.is_empty() {
            return;
        }
        let paths = paths.to_vec();
        let shared = self.shared.clone();
        let stop = self.stop.clone();
        let _ = std::thread::Builder::new()
            .name("cairn-scan".into())
            .spawn(move || {
                let (mut items, mut bytes) = (0u64, 0u64);
                let mut stack = paths;
                while let Some(p) = stack.pop() {
                    if stop.load(Relaxed) {
                        return;
                    }
                    let Ok(m) = std::fs::symlink_metadata(&p) else {
                        continue;
                    };
                    if m.is_dir() {
                        if let Ok(rd) = std::fs::read_dir(&p) {
                            stack.extend(rd.flatten().map(|e| e.path()));
                        }
                    } else if m.is_file() {
                        items += 1;
                        bytes += m.len();
                    }
                }
                shared.items_total.store(items, Relaxed);
                shared.bytes_total.store(bytes, Relaxed);
            });
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.finish();
    }
}

fn draw(b: &ProgressBar, s: &Shared) {
    let items = s.items.load(Relaxed);
    let phase = s.phase.lock().map(|p| p.clone()).unwrap_or_default();
    match Shared::total(&s.bytes_total) {
        Some(t) => b.set_length(t),
        None => b.unset_length(),
    }
    b.set_position(s.bytes.load(Relaxed));
    b.set_message(match Shared::total(&s.items_total) {
        Some(t) => format!("{phase} {items}/{t}"),
        None => format!("{phase} {items}"),
    });
    b.tick();
}

fn emit(v: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

impl cairn::ops::Progress for Reporter {
    fn file_done(&self, _path: &Path, bytes: u64) {
        self.advance(1, bytes);
    }

    fn error(&self, path: &Path, error: &cairn::Error) {
        match self.mode {
            Mode::Json => emit(&serde_json::json!({
                "message_type": "error",
                "command": self.shared.command,
                "path": path.to_string_lossy(),
                "error": error.to_string(),
            })),
            _ if self.warnings => match &self.bar {
                Some(b) => b.suspend(|| eprintln!("warning: {error}")),
                None => eprintln!("warning: {error}"),
            },
            _ => {}
        }
    }

    fn start(&self, phase: &str, items: Option<u64>, bytes: Option<u64>) {
        if let Ok(mut p) = self.shared.phase.lock() {
            *p = phase.to_string();
        }
        if let Ok(mut t) = self.shared.phase_started.lock() {
            *t = Instant::now();
        }
        self.shared.items.store(0, Relaxed);
        self.shared.bytes.store(0, Relaxed);
        self.set_totals(items, bytes);
        if self.mode == Mode::Json {
            emit(&self.shared.status());
        }
    }

    fn advance(&self, items: u64, bytes: u64) {
        self.shared.items.fetch_add(items, Relaxed);
        self.shared.bytes.fetch_add(bytes, Relaxed);
    }
}
