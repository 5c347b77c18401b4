#!/usr/bin/env bash
# A self-hoster's whole nightly routine, Cairn against restic and borg on the
# same machine and corpus, in one run: `cairn run JOB` (one command, a TOML
# job: backup, retention keep_daily 7 / keep_weekly 4, prune every night,
# a 1/7 data-slice check) against the equivalent glue scripts:
#   restic backup && restic forget --keep-daily 7 --keep-weekly 4 --prune
#     && restic check --read-data-subset K/7
#   borg create && borg prune --keep-daily 7 --keep-weekly 4 && borg compact
#     && borg check --repository-only      (borg cannot read a data subset)
# The corpus is the kernel tree plus a live Vaultwarden-like SQLite database
# in it. A first run of each routine makes the full backup (timed apart);
# then, for each night, the database gets one night of mutate_db.py and 20
# source files get a line appended, and each tool's routine is timed
# (/usr/bin/time: wall seconds, peak RSS of the whole routine). Warm page
# cache (the corpus is read before every timed routine); the tool that goes
# first rotates from night to night. Prints medians, ratios, per-step
# medians and repository sizes.
#
#   benches/nightly_job.sh [-c CORPUS_DIR] [-n NIGHTS] [-r REPS] [-t "cairn restic borg"]
#
# CORPUS_DIR defaults to $HOME/cairn-bench/src (../shared/bench/corpus.sh);
# it is copied to $WORK with $DATA/db.pristine/vault.sqlite3 (DATA defaults
# to $HOME/cairn-bench) and only the copies change. NIGHTS defaults to 3,
# REPS (fresh corpus and repositories each time) to 3; medians are over all
# REPS x NIGHTS nights (about 10 minutes on 2 cores with the defaults). Needs restic, borgbackup, python3, a release build
# of Cairn (CAIRN_BIN overrides), about 3 GB free in /tmp plus the
# repositories. BENCH_DIR points at the corpus scripts (../shared/bench).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CORPUS=$HOME/cairn-bench/src
NIGHTS=3
REPS=3
TOOLS="cairn restic borg"
while getopts "c:n:r:t:h" opt; do
    case $opt in
        c) CORPUS=$OPTARG ;;
        n) NIGHTS=$OPTARG ;;
        r) REPS=$OPTARG ;;
        t) TOOLS=$OPTARG ;;
        *) sed -n '2,27p' "$0"; exit 2 ;;
    esac
done
DATA=${DATA:-$HOME/cairn-bench}
BENCH_DIR=${BENCH_DIR:-$HERE/../shared/bench}
PRISTINE=$DATA/db.pristine/vault.sqlite3
CAIRN_BIN=${CAIRN_BIN:-$HERE/target/release/cairn}
CORPUS=$(cd "$CORPUS" && pwd)
[ -f "$PRISTINE" ] || { echo "no $PRISTINE: run $BENCH_DIR/corpus.sh first" >&2; exit 1; }
WORK=${WORK:-$(mktemp -d /tmp/cairn-nightly.XXXXXX)}
trap 'rm -rf "$WORK"' EXIT
export RESTIC_PASSWORD=bench BORG_PASSPHRASE=bench
export RESTIC_CACHE_DIR=$WORK/restic-cache BORG_BASE_DIR=$WORK/borg-base
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=no BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
export CAIRN_STATE_DIR=$WORK/cairn-state CAIRN_CACHE_DIR=$WORK/cairn-cache
unset CAIRN_PASSWORD CAIRN_PASSWORD_FILE CAIRN_PASSWORD_COMMAND CAIRN_REPOSITORY CAIRN_CONFIG
echo bench > "$WORK/pass"
DATASET=$WORK/corpus           # the directory every tool backs up

# The glue scripts a self-hoster would run from cron. Each logs its steps'
# durations ("step seconds") to $STEPLOG for the per-step table.
cat > "$WORK/restic-night.sh" <<'SH'
#!/usr/bin/env bash
# restic-night.sh REPO DIR SLICE
set -euo pipefail
repo=$1 dir=$2 slice=$3
st() { local n=$1 t=$EPOCHREALTIME; shift; "$@"; awk -v a="$t" -v b="$EPOCHREALTIME" -v n="$n" 'BEGIN { printf "%s %.3f\n", n, b - a }' >> "$STEPLOG"; }
st backup restic -r "$repo" backup -q "$dir"
st forget+prune restic -r "$repo" forget -q --keep-daily 7 --keep-weekly 4 --prune
st check restic -r "$repo" check -q --read-data-subset "$slice/7"
SH
cat > "$WORK/borg-night.sh" <<'SH'
#!/usr/bin/env bash
# borg-night.sh REPO DIR
set -euo pipefail
repo=$1 dir=$2
st() { local n=$1 t=$EPOCHREALTIME; shift; "$@"; awk -v a="$t" -v b="$EPOCHREALTIME" -v n="$n" 'BEGIN { printf "%s %.3f\n", n, b - a }' >> "$STEPLOG"; }
st backup borg create "$repo::{now}" "$dir"
st prune borg prune --keep-daily 7 --keep-weekly 4 "$repo"
st compact borg compact "$repo"
st check borg check --repository-only "$repo"
SH
chmod +x "$WORK/restic-night.sh" "$WORK/borg-night.sh"

warm() { find "$DATASET" -type f -print0 | xargs -0 cat > /dev/null 2>&1 || true; }

# timed REP NIGHT TOOL CMD...: runs CMD, appends "rep night tool wall rss_mb"
# to $WORK/raw; the routine's steps go to $WORK/steps.
timed() {
    local rep=$1 night=$2 tool=$3; shift 3
    : > "$WORK/steplog"
    STEPLOG=$WORK/steplog /usr/bin/time -f "%e %M" -o "$WORK/time.out" "$@" > "$WORK/cmd.out" 2> "$WORK/cmd.err" || {
        echo "FAILED ($tool, night $night): $*" >&2; cat "$WORK/cmd.out" "$WORK/cmd.err" >&2; exit 1; }
    read -r wall rss < "$WORK/time.out"
    echo "$rep $night $tool $wall $((rss / 1024))" >> "$WORK/raw"
    if [ "$tool" = cairn ]; then   # per-step seconds from `cairn run --json`
        python3 -c 'import json,sys
for j in json.load(open(sys.argv[1]))["jobs"]:
    for s in j["steps"]:
        assert s["ok"], s
        print(s["step"].split(" (")[0].replace(" on bench", "").replace(" ", "_"), s["seconds"])' \
            "$WORK/cmd.out" > "$WORK/steplog"
    fi
    sed "s/^/$rep $night $tool /" "$WORK/steplog" >> "$WORK/steps"
}

routine() { # routine REP NIGHT TOOL
    local rep=$1 night=$2 tool=$3 repo=$WORK/repo-$3
    # night 0 is the first run; the check slice rotates as Cairn's does
    local slice=$(( night % 7 + 1 ))
    sync; warm
    case $tool in
        cairn)  timed "$rep" "$night" cairn "$CAIRN_BIN" --config "$WORK/cairn.toml" run nightly --json ;;
        restic) timed "$rep" "$night" restic "$WORK/restic-night.sh" "$repo" "$DATASET" "$slice" ;;
        borg)   timed "$rep" "$night" borg "$WORK/borg-night.sh" "$repo" "$DATASET" ;;
    esac
}

size() { echo "$1 $2 $3 size $(( $(du -sb "$WORK/repo-$3" | cut -f1) / 1000000 ))" >> "$WORK/raw"; }

mapfile -t SOURCES < <(cd "$CORPUS" && find . -type f -name '*.c' | sort)
echo "corpus: $CORPUS ($(du -sh "$CORPUS" | cut -f1), $(find "$CORPUS" -type f | wc -l) files)" \
     "+ $PRISTINE ($(du -sh "$PRISTINE" | cut -f1))"
echo "machine: $(nproc) cores; $(restic version | head -1); $(borg --version); $("$CAIRN_BIN" --version)"
echo "$NIGHTS nights x $REPS reps; work dir $WORK"
: > "$WORK/raw"; : > "$WORK/steps"
for rep in $(seq "$REPS"); do
    rm -rf "$DATASET" "$WORK"/repo-* "$RESTIC_CACHE_DIR" "$BORG_BASE_DIR" "$CAIRN_STATE_DIR" "$CAIRN_CACHE_DIR"
    mkdir -p "$DATASET/db"
    cp -a "$CORPUS" "$DATASET/src"
    cp "$PRISTINE" "$DATASET/db/vault.sqlite3"
    cat > "$WORK/cairn.toml" <<EOF
[repository.bench]
url = "$WORK/repo-cairn"
password_file = "$WORK/pass"

[job.nightly]
repository = "bench"
paths = ["$DATASET"]
keep_daily = 7
keep_weekly = 4
prune_every_days = 0
check_slices = 7
EOF
    for tool in $TOOLS; do
        case $tool in
            cairn)  "$CAIRN_BIN" -r "$WORK/repo-cairn" --password-file "$WORK/pass" init -q ;;
            restic) restic -r "$WORK/repo-restic" init --repository-version 2 -q ;;
            borg)   borg init --encryption=repokey-blake2 "$WORK/repo-borg" > /dev/null 2>&1 ;;
        esac
    done
    order=($TOOLS)
    for night in $(seq 0 "$NIGHTS"); do
        if [ "$night" -gt 0 ]; then
            python3 "$BENCH_DIR/mutate_db.py" "$DATASET/db/vault.sqlite3" --night "$night" > /dev/null
            for i in $(seq 0 19); do   # 20 different files each night
                f=${SOURCES[$(( (night * 20 + i) * 997 % ${#SOURCES[@]} ))]}
                echo "/* night $night */" >> "$DATASET/src/$f"
            done
        fi
        for tool in "${order[@]}"; do
            routine "$rep" "$night" "$tool"
            if [ "$night" -eq 0 ]; then size "$rep" 0 "$tool"; fi
        done
        order=("${order[@]:1}" "${order[0]}")   # rotate who goes first
        echo "  rep $rep night $night done"
    done
    for tool in $TOOLS; do size "$rep" "$NIGHTS" "$tool"; done
done

python3 - "$WORK/raw" "$WORK/steps" "$TOOLS" "$NIGHTS" <<'PY'
import statistics, sys
tools = sys.argv[3].split()
nights = int(sys.argv[4])
walls, rss, first, sizes = {}, {}, {}, {}
for rep, night, tool, a, b in (l.split() for l in open(sys.argv[1])):
    if a == "size":
        sizes.setdefault((tool, int(night)), []).append(float(b))
    elif night == "0":
        first.setdefault(tool, []).append((float(a), float(b)))
    else:
        walls.setdefault(tool, []).append(float(a))
        rss.setdefault(tool, []).append(float(b))
med = lambda v: statistics.median(v) if v else float("nan")
base = med(walls.get("cairn", []))
print(f"\nnightly routine (median of {len(walls.get(tools[0], []))} nights)")
print(f"{'tool':<7} {'wall s':>8} {'min':>7} {'max':>7} {'peak MB':>8} {'x cairn (time)':>15}")
for t in tools:
    w = walls[t]
    print(f"{t:<7} {med(w):>8.2f} {min(w):>7.2f} {max(w):>7.2f} {max(rss[t]):>8.0f} {med(w) / base:>15.2f}")
pern = {}
for rep, night, tool, a, b in (l.split() for l in open(sys.argv[1])):
    if a != "size" and night != "0":
        pern.setdefault((tool, int(night)), []).append(float(a))
print("\nnight by night, median over the reps (s)")
print(f"{'tool':<7} " + " ".join(f"{'night ' + str(n):>9}" for n in range(1, nights + 1)))
for t in tools:
    print(f"{t:<7} " + " ".join(f"{med(pern[(t, n)]):>9.2f}" for n in range(1, nights + 1)))
fb = med([x[0] for x in first.get("cairn", [])])
print(f"\nfirst run (full backup + the rest of the routine)")
for t in tools:
    w = med([x[0] for x in first[t]])
    print(f"{t:<7} {w:>8.2f} s {max(x[1] for x in first[t]):>6.0f} MB {w / fb:>8.2f} x cairn")
steps = {}
for rep, night, tool, step, s in (l.split() for l in open(sys.argv[2])):
    if night != "0":
        steps.setdefault(tool, {}).setdefault(step, []).append(float(s))
print("\nper-step medians (min-max) over the nights, s")
for t in tools:
    print(f"{t:<7} " + "  ".join(f"{k} {med(v):.2f} ({min(v):.2f}-{max(v):.2f})"
                                 for k, v in steps.get(t, {}).items()))
print("\nrepository size (MB): after the first run, after the last night")
for t in tools:
    print(f"{t:<7} {med(sizes[(t, 0)]):>8.0f} {med(sizes[(t, nights)]):>8.0f}")
PY
