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
    /// Entries that could not be processed so far.
    errors: AtomicU64,
    /// The file being worked on (backup: the one being read).
    current: Mutex<String>,
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
            errors: AtomicU64::new(0),
            current: Mutex::new(String::new()),
        });
        let bar = (mode == Mode::Bar).then(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            // One line that never wraps: `draw` fits the message to the
            // terminal's width, and `wide_msg` cuts whatever is left over.
            b.set_style(
                ProgressStyle::with_template("{spinner} {wide_msg}")
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

    /// True if per-entry errors are printed as they happen (as warnings on
    /// standard error, or as JSON `error` events): the command then does
    /// not list them again at the end.
    pub fn shows_errors(&self) -> bool {
        self.warnings || self.mode == Mode::Json
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
    let phase = s.phase.lock().map(|p| p.clone()).unwrap_or_default();
    let current = s.current.lock().map(|p| p.clone()).unwrap_or_default();
    let elapsed = s
        .phase_started
        .lock()
        .map(|t| t.elapsed())
        .unwrap_or_default();
    let width = terminal_width().unwrap_or(80);
    // The spinner and its space take two columns.
    b.set_message(status_line(
        &Status {
            phase: &phase,
            items: s.items.load(Relaxed),
            items_total: Shared::total(&s.items_total),
            bytes: s.bytes.load(Relaxed),
            bytes_total: Shared::total(&s.bytes_total),
            errors: s.errors.load(Relaxed),
            elapsed_s: elapsed.as_secs_f64(),
            current: &current,
        },
        width.saturating_sub(3),
    ));
    b.tick();
}

/// Columns of the terminal standard error is on, if it is one.
fn terminal_width() -> Option<usize> {
    let ws = rustix::termios::tcgetwinsize(std::io::stderr()).ok()?;
    (ws.ws_col > 0).then_some(usize::from(ws.ws_col))
}

/// What the progress line shows.
struct Status<'a> {
    phase: &'a str,
    items: u64,
    items_total: Option<u64>,
    bytes: u64,
    bytes_total: Option<u64>,
    errors: u64,
    elapsed_s: f64,
    current: &'a str,
}

/// The progress line, at most `width` characters: phase, counts, bytes,
/// percentage, errors and time, then as much of the current file's path
/// as fits (its end, the name, is kept). On a narrow terminal the least
/// important parts go first, so the line never wraps.
fn status_line(s: &Status<'_>, width: usize) -> String {
    use super::{count, human_bytes, human_duration};
    let mut parts = vec![match s.items_total {
        Some(t) => format!("{} {}/{t}", s.phase, s.items),
        None => format!("{} {}", s.phase, s.items),
    }];
    parts.push(match s.bytes_total {
        Some(t) if t > 0 => format!(
            "{}/{} {:.0}%",
            human_bytes(s.bytes),
            human_bytes(t),
            (s.bytes as f64 * 100.0 / t as f64).min(100.0)
        ),
        _ => human_bytes(s.bytes),
    });
    parts.push(count(s.errors, "error"));
    parts.push(human_duration(s.elapsed_s));
    // Drop parts from the end (time, then errors, …) until the fixed part
    // fits, but keep the first.
    let mut line = parts.join("  ");
    while line.chars().count() > width && parts.len() > 1 {
        parts.pop();
        line = parts.join("  ");
    }
    if line.chars().count() > width {
        return line.chars().take(width).collect();
    }
    let room = width - line.chars().count();
    if !s.current.is_empty() && room > 4 {
        let n = s.current.chars().count();
        line.push_str("  ");
        if n <= room - 2 {
            line.push_str(s.current);
        } else {
            // "…" and the last characters of the path.
            line.push('…');
            line.extend(s.current.chars().skip(n - (room - 3)));
        }
    }
    line
}

/// Where JSON events go once [`human_output_to_stderr`] has moved standard
/// output: the standard output the command was started with.
static EVENTS: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();

/// For `--progress json` without `--json`: standard output carries only
/// the JSON events (docs/JSON.md), so every other line — the command's
/// human summary, hook output in `cairn run` — goes to standard error.
/// Standard output is kept for the events, and file descriptor 1 becomes
/// a copy of standard error.
pub fn human_output_to_stderr() -> std::io::Result<()> {
    let events = rustix::io::fcntl_dupfd_cloexec(std::io::stdout(), 3)?;
    std::io::stdout().flush()?;
    rustix::stdio::dup2_stdout(std::io::stderr())?;
    let _ = EVENTS.set(std::fs::File::from(events));
    Ok(())
}

fn emit(v: &serde_json::Value) {
    let line = format!("{v}\n");
    match EVENTS.get() {
        Some(mut f) => {
            let _ = f.write_all(line.as_bytes());
        }
        None => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
        }
    }
}

impl cairn::ops::Progress for Reporter {
    fn file_started(&self, path: &Path) {
        if self.mode == Mode::Bar
            && let Ok(mut c) = self.shared.current.lock()
        {
            *c = path.to_string_lossy().into_owned();
        }
    }

    fn file_done(&self, path: &Path, bytes: u64) {
        self.file_started(path);
        self.advance(1, bytes);
    }

    fn error(&self, path: &Path, error: &cairn::Error) {
        self.shared.errors.fetch_add(1, Relaxed);
        match self.mode {
            Mode::Json => emit(&serde_json::json!({
                "message_type": "error",
                "command": self.shared.command,
                "path": path.to_string_lossy(),
                "error": error.to_string(),
            })),
            // As the command would list it at the end.
            _ if self.warnings => {
                let line = format!("error: {}: {error}", path.display());
                match &self.bar {
                    Some(b) => b.suspend(|| eprintln!("{line}")),
                    None => eprintln!("{line}"),
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn status<'a>(current: &'a str) -> Status<'a> {
        Status {
            phase: "backup",
            items: 1234,
            items_total: Some(78_579),
            bytes: 3 << 30,
            bytes_total: Some(12 << 30),
            errors: 2,
            elapsed_s: 75.0,
            current,
        }
    }

    #[test]
    fn the_progress_line_shows_counts_errors_and_the_current_file() {
        assert_eq!(
            status_line(&status("/srv/app/data.db"), 200),
            "backup 1234/78579  3.00 GiB/12.00 GiB 25%  2 errors  1m15s  /srv/app/data.db"
        );
        let one = Status {
            errors: 1,
            ..status("")
        };
        assert!(status_line(&one, 200).ends_with("  1 error  1m15s"));
    }

    #[test]
    fn the_progress_line_fits_a_narrow_terminal() {
        let path = "/srv/a/very/long/path/to/some/deeply/nested/file.sqlite3";
        for width in [0, 5, 10, 20, 40, 60, 77, 80, 120] {
            let line = status_line(&status(path), width);
            assert!(
                line.chars().count() <= width,
                "{width} columns: {line:?} has {}",
                line.chars().count()
            );
        }
        // The file's name survives when part of its path fits.
        let line = status_line(&status(path), 90);
        assert_eq!(
            line,
            "backup 1234/78579  3.00 GiB/12.00 GiB 25%  2 errors  1m15s  …me/deeply/nested/file.sqlite3"
        );
        assert_eq!(line.chars().count(), 90);
        // The time and then the error count give way before the counts.
        assert_eq!(
            status_line(&status(path), 45),
            "backup 1234/78579  3.00 GiB/12.00 GiB 25%"
        );
        assert_eq!(
            status_line(&status(path), 40),
            "backup 1234/78579  …/nested/file.sqlite3"
        );
        assert_eq!(status_line(&status(path), 20), "backup 1234/78579");
    }
}
