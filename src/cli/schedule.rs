//! `cairn schedule print JOB`: a systemd service and timer pair, and the
//! equivalent crontab line, that run the job nightly.

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

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    let Sub::Print { job, at } = &a.command;
    if g.given.repo {
        anyhow::bail!("`cairn schedule` does not take -r/--repo: the job names its repository");
    }
    let (h, m) = parse_at(at)?;
    let loaded = jobconfig::load(g.config.as_deref())?;
    loaded.job(job)?;
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
    let timer = format!(
        "\
[Unit]
Description=Run the Cairn backup job {job} every night

[Timer]
OnCalendar=*-*-* {h:02}:{m:02}:00
RandomizedDelaySec=10min
# A run missed while the machine was off happens at the next boot.
Persistent=true

[Install]
WantedBy=timers.target
"
    );
    let crontab = format!("{m} {h} * * * {command}");
    if g.json {
        super::print_summary(&serde_json::json!({
            "job": job,
            "service_name": format!("{unit}.service"),
            "service": service,
            "timer_name": format!("{unit}.timer"),
            "timer": timer,
            "crontab": crontab,
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
}
