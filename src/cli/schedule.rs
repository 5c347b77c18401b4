//! `cairn schedule print JOB`: a systemd service and timer pair, and the
//! equivalent crontab line, that run the job nightly (`--at`) or every few
//! minutes or hours (`--every`).

use anyhow::{Result, bail};

use super::GlobalArgs;
use super::jobconfig;

/// Arguments of `cairn schedule`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Print the unit files and the crontab line for a job.
    Print {
        /// The job (a `[job.NAME]` table of the configuration file).
        job: String,
        /// Time of day to run, HH:MM in local time.
        #[arg(long, default_value = "03:00", value_name = "HH:MM")]
        at: String,
        /// Run every this long instead of nightly: minutes that divide an
        /// hour (`15m`, `30m`) or hours that divide a day (`2h`, `6h`).
        #[arg(long, value_name = "INTERVAL", conflicts_with = "at")]
        every: Option<String>,
    },
}

/// Shell-quote a word for ExecStart= and crontab lines.
fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-:=@+,".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Parse "HH:MM".
fn parse_at(at: &str) -> Result<(u8, u8)> {
    let bad = || anyhow::anyhow!("--at {at:?}: give a time of day as HH:MM, e.g. 03:00");
    let (h, m) = at.split_once(':').ok_or_else(bad)?;
    let (h, m): (u8, u8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 {
        bail!(bad());
    }
    Ok((h, m))
}

/// When a timer fires: nightly at a time of day, or every few minutes or
/// hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    At(u8, u8),
    /// Every this many minutes (a divisor of 60, or whole hours that divide
    /// a day).
    Every(u32),
}

/// Parse `--every`: `15m`, `30min`, `2h`, `1 hour`…
fn parse_every(every: &str) -> Result<u32> {
    let bad = || {
        anyhow::anyhow!(
            "--every {every:?}: give minutes that divide an hour (5m, 10m, 15m, 20m, 30m) \
             or hours that divide a day (1h, 2h, 3h, 4h, 6h, 8h, 12h)"
        )
    };
    let span: jiff::Span = every.trim().parse().map_err(|_| bad())?;
    let minutes = span
        .total(jiff::SpanTotal::from(jiff::Unit::Minute).days_are_24_hours())
        .map_err(|_| bad())?;
    if minutes.fract() != 0.0 || !(1.0..1440.0).contains(&minutes) {
        return Err(bad());
    }
    let minutes = minutes as u32;
    let fits = if minutes < 60 {
        60 % minutes == 0
    } else {
        minutes % 60 == 0 && 24 % (minutes / 60) == 0
    };
    if !fits {
        return Err(bad());
    }
    Ok(minutes)
}

impl When {
    /// systemd's `OnCalendar=` value.
    fn on_calendar(self) -> String {
        match self {
            When::At(h, m) => format!("*-*-* {h:02}:{m:02}:00"),
            When::Every(n) if n < 60 => format!("*-*-* *:00/{n}:00"),
            When::Every(n) => format!("*-*-* 00/{}:00:00", n / 60),
        }
    }

    /// The crontab line's five time fields.
    fn cron(self) -> String {
        match self {
            When::At(h, m) => format!("{m} {h} * * *"),
            When::Every(n) if n < 60 => format!("*/{n} * * * *"),
            When::Every(n) => format!("0 */{} * * *", n / 60),
        }
    }

    /// `RandomizedDelaySec=`: up to 10 minutes for a nightly job, a tenth
    /// of the interval for a frequent one (runs stay apart).
    fn delay(self) -> String {
        match self {
            When::At(..) => "10min".into(),
            When::Every(n) => format!("{}s", (n * 6).min(600)),
        }
    }

    /// "every night", "every 15 minutes", "every 2 hours".
    fn words(self) -> String {
        match self {
            When::At(..) => "every night".into(),
            When::Every(1) => "every minute".into(),
            When::Every(n) if n < 60 => format!("every {n} minutes"),
            When::Every(60) => "every hour".into(),
            When::Every(n) => format!("every {} hours", n / 60),
        }
    }
}

/// What a job run more often than daily should set, and does not: each a
/// line of advice.
fn frequent_notes(j: &jobconfig::JobConfig, when: When) -> Vec<String> {
    let When::Every(n) = when else {
        return Vec::new();
    };
    let per_day = 1440 / n;
    let mut notes = Vec::new();
    if !j.has_policy() {
        notes.push(format!(
            "the job has no retention: {per_day} snapshots a day would pile up; \
             add for instance keep_within = \"2d\", keep_hourly = 48, keep_daily = 14, \
             keep_weekly = 8"
        ));
    } else if j.keep_within.is_none() && j.keep_hourly.is_none() && j.keep_last.is_none() {
        notes.push(
            "the job keeps only daily or longer snapshots: each day's frequent captures \
             go at the next retention run; add keep_within = \"2d\" (every capture of the \
             last two days) or keep_hourly = 48"
                .into(),
        );
    }
    if j.check_every_hours.unwrap_or(0) == 0 && j.check_slices != Some(0) {
        notes.push(format!(
            "the job checks the repository and reads a slice of its data at every run \
             ({per_day} a day); add check_every_hours = 24"
        ));
    }
    if j.prune_every_days == Some(0) {
        notes.push(format!(
            "prune_every_days = 0 prunes at every run ({per_day} a day); the default \
             (weekly) is enough"
        ));
    }
    notes
}

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    let Sub::Print { job, at, every } = &a.command;
    if g.given.repo {
        anyhow::bail!("`cairn schedule` does not take -r/--repo: the job names its repository");
    }
    let when = match every {
        Some(e) => When::Every(parse_every(e)?),
        None => {
            let (h, m) = parse_at(at)?;
            When::At(h, m)
        }
    };
    let loaded = jobconfig::load(g.config.as_deref())?;
    let notes = frequent_notes(loaded.job(job)?, when);
    let config = std::fs::canonicalize(&loaded.path).unwrap_or(loaded.path.clone());
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.to_str().map(str::to_string))
        .unwrap_or_else(|| "/usr/local/bin/cairn".into());
    let command = format!(
        "{} --config {} run {}",
        quote(&exe),
        quote(&config.to_string_lossy()),
        quote(job)
    );
    let unit = format!("cairn-{job}");
    let service = format!(
        "\
[Unit]
Description=Cairn backup job {job}
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart={command}
# Backups yield to the applications they protect.
Nice=10
IOSchedulingClass=idle
# Cairn's cache of repository metadata (speeds up remote repositories);
# job state (prune cadence, check slices) is kept in /var/lib/cairn.
Environment=XDG_CACHE_HOME=/var/cache
StateDirectory=cairn
"
    );
    let (words, calendar, delay) = (when.words(), when.on_calendar(), when.delay());
    let timer = format!(
        "\
[Unit]
Description=Run the Cairn backup job {job} {words}

[Timer]
OnCalendar={calendar}
RandomizedDelaySec={delay}
# A run missed while the machine was off happens at the next boot.
Persistent=true

[Install]
WantedBy=timers.target
"
    );
    let crontab = format!("{} {command}", when.cron());
    if g.json {
        super::print_summary(&serde_json::json!({
            "job": job,
            "service_name": format!("{unit}.service"),
            "service": service,
            "timer_name": format!("{unit}.timer"),
            "timer": timer,
            "crontab": crontab,
            "notes": notes,
        }))?;
        return Ok(super::exit::OK);
    }
    print!(
        "\
# /etc/systemd/system/{unit}.service
{service}
# /etc/systemd/system/{unit}.timer
{timer}
# Enable with:
#   systemctl daemon-reload && systemctl enable --now {unit}.timer
# Its output goes to the journal: journalctl -u {unit}.service
#
# Or, without systemd, this crontab line (crontab -e) runs the same job at
# the same time; cron mails any output, and `cairn run` prints only on
# failure:
{crontab}
"
    );
    for n in &notes {
        println!("# note: {n}");
    }
    Ok(super::exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_times() {
        assert_eq!(quote("/usr/bin/cairn"), "/usr/bin/cairn");
        assert_eq!(quote("my job"), "'my job'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(parse_at("03:30").unwrap(), (3, 30));
        assert!(parse_at("24:00").is_err());
        assert!(parse_at("3pm").is_err());
    }

    #[test]
    fn intervals_that_divide_an_hour_or_a_day_become_calendar_and_cron_steps() {
        assert_eq!(parse_every("15m").unwrap(), 15);
        assert_eq!(parse_every("30min").unwrap(), 30);
        assert_eq!(parse_every("2h").unwrap(), 120);
        assert_eq!(parse_every("1 hour").unwrap(), 60);
        for bad in ["7m", "90m", "5h", "1d", "0m", "30s", "soon", ""] {
            assert!(parse_every(bad).is_err(), "{bad}");
        }
        assert_eq!(When::Every(15).on_calendar(), "*-*-* *:00/15:00");
        assert_eq!(When::Every(15).cron(), "*/15 * * * *");
        assert_eq!(When::Every(15).delay(), "90s");
        assert_eq!(When::Every(15).words(), "every 15 minutes");
        assert_eq!(When::Every(120).on_calendar(), "*-*-* 00/2:00:00");
        assert_eq!(When::Every(120).cron(), "0 */2 * * *");
        assert_eq!(When::Every(120).delay(), "600s");
        assert_eq!(When::At(3, 5).on_calendar(), "*-*-* 03:05:00");
        assert_eq!(When::At(3, 5).cron(), "5 3 * * *");
    }
}
