//! `cairn sql`: a read-only query against a database as a snapshot holds
//! it, printed as the `sqlite3` shell prints it.

use std::io::Write;

use anyhow::{Result, bail};
use cairn::ops::sql::{Cell, SnapshotDb, open_path};

use super::{GlobalArgs, split_snapshot_path};

/// Arguments of `cairn sql`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The snapshot (ID prefix or `latest`) and the database's path in it.
    #[arg(value_name = "SNAPSHOT:PATH")]
    target: String,
    /// One SQL statement that reads (SELECT, a read-only PRAGMA, EXPLAIN).
    query: String,
    /// Print the column names first (when there is a row).
    #[arg(long)]
    header: bool,
    /// Print CSV, as `sqlite3 -csv`, instead of values joined by `|`.
    #[arg(long)]
    csv: bool,
    #[command(flatten)]
    filter: super::FilterArgs,
    #[command(flatten)]
    pub(super) job: super::JobArgs,
}

/// How rows are printed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `sqlite3 -list`: values joined by `|`.
    List,
    /// `sqlite3 -csv`.
    Csv,
    /// One JSON object per row (docs/JSON.md).
    Json,
}

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    let mode = match (a.csv, g.json) {
        (true, true) => bail!("--csv and --json exclude each other: give one"),
        (true, false) => Mode::Csv,
        (false, true) => Mode::Json,
        (false, false) => Mode::List,
    };
    if a.header && mode == Mode::Json {
        bail!("--header does not apply to --json (every object names its columns)");
    }
    let (spec, path) = split_snapshot_path(&a.target);
    let Some(path) = path.filter(|p| !p.is_empty()) else {
        bail!(
            "{:?} names no database: give SNAPSHOT:PATH (e.g. latest:/srv/app/db.sqlite3)",
            a.target
        );
    };
    let mut repo = g.open()?;
    let mut lock = repo.lock_shared()?;
    let _interrupts = super::Interrupts::install_exiting(&lock, || {})?;
    let repo = lock.load_index()?;
    let (_, snap) = super::select_snapshot(g, &repo, spec, &a.filter.filter()?, Some(path))?;
    let db = open_path(&repo, &snap.tree, path)?;

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut first = true;
    let mut line: Vec<u8> = Vec::new();
    let mut failed: Option<std::io::Error> = None;
    db.query(&a.query, &mut |names, row| {
        line.clear();
        if first && a.header {
            let cells: Vec<Cell> = names
                .iter()
                .map(|n| Cell::Text(n.as_bytes().to_vec()))
                .collect();
            format_row(&db, mode, names, &cells, &mut line)?;
        }
        first = false;
        format_row(&db, mode, names, row, &mut line)?;
        if let Err(e) = out.write_all(&line) {
            failed = Some(e);
            return Err(cairn::Error::invalid("the output was closed"));
        }
        Ok(())
    })
    .or_else(|e| match &failed {
        Some(_) => Ok(0),
        None => Err(e),
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    out.flush()?;
    Ok(super::exit::OK)
}

/// Append one row, with its line end, in `mode`.
fn format_row(
    db: &SnapshotDb<'_>,
    mode: Mode,
    names: &[String],
    row: &[Cell],
    out: &mut Vec<u8>,
) -> cairn::Result<()> {
    match mode {
        Mode::List => {
            for (i, c) in row.iter().enumerate() {
                if i > 0 {
                    out.push(b'|');
                }
                shell_text(db, c, out)?;
            }
        }
        Mode::Csv => {
            for (i, c) in row.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                match c {
                    Cell::Null => {}
                    c => {
                        let mut text = Vec::new();
                        shell_text(db, c, &mut text)?;
                        csv_field(&text, out);
                    }
                }
            }
        }
        Mode::Json => {
            out.push(b'{');
            for (i, (name, c)) in names.iter().zip(row).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(
                    serde_json::Value::from(name.as_str())
                        .to_string()
                        .as_bytes(),
                );
                out.push(b':');
                out.extend_from_slice(json_value(c).to_string().as_bytes());
            }
            out.push(b'}');
        }
    }
    out.push(b'\n');
    Ok(())
}

/// A value as the `sqlite3` shell prints it in list and CSV modes (its
/// `sqlite3_column_text`): NULL as nothing, numbers as SQLite writes them,
/// text as its bytes, a blob as its bytes up to the first NUL.
pub(super) fn shell_text(db: &SnapshotDb<'_>, c: &Cell, out: &mut Vec<u8>) -> cairn::Result<()> {
    match c {
        Cell::Null => {}
        Cell::Integer(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Cell::Real(x) => out.extend_from_slice(db.real_text(*x)?.as_bytes()),
        Cell::Text(t) => out.extend_from_slice(until_nul(t)),
        Cell::Blob(b) => out.extend_from_slice(until_nul(b)),
    }
    Ok(())
}

fn until_nul(b: &[u8]) -> &[u8] {
    b.iter().position(|&x| x == 0).map_or(b, |i| &b[..i])
}

/// A CSV field as `sqlite3 -csv` writes it: quoted (with `"` doubled) when
/// empty or holding a control character, a space, `"`, `'`, `,`, DEL or a
/// non-ASCII byte.
fn csv_field(text: &[u8], out: &mut Vec<u8>) {
    let quote = text.is_empty()
        || text
            .iter()
            .any(|&b| b <= b' ' || b == b'"' || b == b'\'' || b == b',' || b >= 0x7f);
    if !quote {
        out.extend_from_slice(text);
        return;
    }
    out.push(b'"');
    for &b in text {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// A value in `--json` output: NULL as null, integers and finite reals as
/// numbers (an infinite or NaN real as null), text as a string (bytes that
/// are not UTF-8 replaced by U+FFFD), a blob as `{"hex": "…"}`.
pub(super) fn json_value(c: &Cell) -> serde_json::Value {
    match c {
        Cell::Null => serde_json::Value::Null,
        Cell::Integer(i) => serde_json::Value::from(*i),
        Cell::Real(x) => serde_json::Number::from_f64(*x)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Cell::Text(t) => serde_json::Value::from(String::from_utf8_lossy(t).into_owned()),
        Cell::Blob(b) => serde_json::json!({ "hex": hex::encode(b) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(s: &str) -> String {
        let mut v = Vec::new();
        csv_field(s.as_bytes(), &mut v);
        String::from_utf8(v).unwrap()
    }

    /// Compared with `sqlite3 -csv` 3.40: `select 'a b', 'it''s', '', 'é',
    /// 'a;b', 'x|y', 'he said "hi", ok'`.
    #[test]
    fn csv_fields_are_quoted_as_the_sqlite3_shell_quotes_them() {
        assert_eq!(csv("a b"), "\"a b\"");
        assert_eq!(csv("it's"), "\"it's\"");
        assert_eq!(csv(""), "\"\"");
        assert_eq!(csv("é"), "\"é\"");
        assert_eq!(csv("a;b"), "a;b");
        assert_eq!(csv("x|y"), "x|y");
        assert_eq!(csv("he said \"hi\", ok"), "\"he said \"\"hi\"\", ok\"");
        assert_eq!(csv("line\ntwo"), "\"line\ntwo\"");
    }
}
