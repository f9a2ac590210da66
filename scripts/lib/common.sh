# shellcheck shell=bash
# Helpers shared by peapod's scripts. Source it; it defines functions only
# (plus PEAPOD_REPO, the repository root, found from this file's own path).

PEAPOD_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
export PEAPOD_REPO
# Where cargo puts what it builds (CARGO_TARGET_DIR when set, as cargo does).
PEAPOD_TARGET=${CARGO_TARGET_DIR:-$PEAPOD_REPO/target}
[[ $PEAPOD_TARGET == /* ]] || PEAPOD_TARGET="$PEAPOD_REPO/$PEAPOD_TARGET"
export PEAPOD_TARGET

# The program name used in messages: the calling script's file name.
PEAPOD_PROG=$(basename "$0")

log() {
	printf '%s: %s\n' "$PEAPOD_PROG" "$*" >&2
}

warn() {
	printf '%s: warning: %s\n' "$PEAPOD_PROG" "$*" >&2
}

die() {
	printf '%s: error: %s\n' "$PEAPOD_PROG" "$*" >&2
	exit 1
}

require_root() {
	if [[ $(id -u) -ne 0 ]]; then
		die "must run as root (namespaces, cgroups, mounts and apt need it); try: sudo $0 $*"
	fi
}

require_cmd() {
	local cmd
	for cmd in "$@"; do
		command -v "$cmd" >/dev/null 2>&1 ||
			die "'$cmd' not found on PATH; run scripts/setup first (as root)"
	done
}

# now_ms: milliseconds since the epoch (bash 5 has EPOCHREALTIME).
now_ms() {
	local t=${EPOCHREALTIME/[.,]/}
	printf '%s\n' "$((t / 1000))"
}

# wait_until SECONDS DESCRIPTION COMMAND [ARGS...]
# Polls COMMAND (every 20 ms at first, backing off to 200 ms) until it
# succeeds; returns 1 once SECONDS have passed without success.
wait_until() {
	local timeout=$1 what=$2
	shift 2
	local deadline=$(($(now_ms) + timeout * 1000)) delay=0.02
	while true; do
		if "$@"; then
			return 0
		fi
		if (($(now_ms) >= deadline)); then
			log "timed out after ${timeout}s waiting for $what"
			return 1
		fi
		sleep "$delay"
		case $delay in
		0.02) delay=0.05 ;;
		0.05) delay=0.1 ;;
		*) delay=0.2 ;;
		esac
	done
}

# pid_alive PID: true while PID exists and is not a zombie.
pid_alive() {
	local state
	[[ -r /proc/$1/stat ]] || return 1
	state=$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ -n $state && $state != Z && $state != X ]]
}

pid_gone() {
	! pid_alive "$1"
}

# stop_pid PID NAME [SECONDS]: SIGTERM, wait up to SECONDS (default 10),
# then SIGKILL and wait again. Only ever signals the one given PID.
stop_pid() {
	local pid=$1 name=$2 timeout=${3:-10}
	pid_alive "$pid" || return 0
	kill -TERM "$pid" 2>/dev/null || true
	if wait_until "$timeout" "$name (pid $pid) to exit after SIGTERM" pid_gone "$pid"; then
		return 0
	fi
	warn "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
	kill -KILL "$pid" 2>/dev/null || true
	wait_until 5 "$name (pid $pid) to exit after SIGKILL" pid_gone "$pid"
}

# fingerprint FILE...: one sha256 over the contents of all FILEs, in order.
fingerprint() {
	local f
	for f in "$@"; do
		[[ -e $f ]] || die "missing input file: $f"
	done
	cat -- "$@" | sha256sum | cut -d' ' -f1
}

# up_to_date STAMP FINGERPRINT OUTPUT...: true when every OUTPUT exists and
# STAMP holds FINGERPRINT (the inputs are unchanged since the last build).
up_to_date() {
	local stamp=$1 want=$2 out
	shift 2
	for out in "$@"; do
		[[ -e $out ]] || return 1
	done
	[[ -f $stamp ]] && [[ $(<"$stamp") == "$want" ]]
}

# rustup installs cargo under ~/.cargo/bin, which a non-login shell (CI) may lack.
if ! command -v cargo >/dev/null 2>&1 && [[ -x ${HOME:-/root}/.cargo/bin/cargo ]]; then
	PATH="${HOME:-/root}/.cargo/bin:$PATH"
	export PATH
fi
