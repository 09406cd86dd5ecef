#!/usr/bin/env bash
# Build the benchmark programs and zygote (release), start a zygote daemon on a private
# socket, and run `zygote bench-daemon` against it: spawns through the daemon from
# concurrent clients against posix_spawn of the same programs, in the same run.
#
# Usage: benches/daemon.sh [PROGRAM...]     PROGRAM: tiny, bigrel-ends (default: both)
# Environment:
#   CLIENTS      concurrent clients                          (default 4)
#   SPAWNS       timed rounds per client and per method      (default 500)
#   WARMUP       untimed rounds per client and per method    (default 20)
#   BLOCKS       timed blocks per method, alternated ABBA    (default 4)
#   ENTRIES      pointers in bigrel's table                  (default 500000)
#   JSON         where to write the JSON report              (default target/bench/daemon.json)
#
# Output: the table on the terminal (stderr); the JSON report in target/bench/daemon.json ($JSON);
# the daemon's log in target/bench/daemon.log. The daemon is stopped on exit, whatever
# happens. Exits non-zero if the benchmark failed or any round did not exit 0.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out="$root/target/bench"
clients=${CLIENTS:-4}
spawns=${SPAWNS:-500}
warmup=${WARMUP:-20}
blocks=${BLOCKS:-4}
entries=${ENTRIES:-500000}
programs=("$@")
[ ${#programs[@]} -gt 0 ] || programs=(tiny bigrel-ends)

die() { echo "benches/daemon.sh: $*" >&2; exit 1; }
for tool in gcc python3 readelf cargo; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
mkdir -p "$out"

# shellcheck source=benches/programs.sh
. "$root/benches/programs.sh"

command_line=()
for p in "${programs[@]}"; do
    case $p in
        tiny | bigrel-ends) build_program "$p" ;;
        *) die "unknown program '$p' (tiny, bigrel-ends)" ;;
    esac
    # Programs are separated by `::` on the bench-daemon command line.
    [ ${#command_line[@]} -eq 0 ] || command_line+=("::")
    command_line+=("$out/$p")
done

(cd "$root" && cargo build --release --quiet) || die "cargo build --release failed"
zygote="$root/target/release/zygote"

# A private socket; the daemon is stopped (SIGTERM, then SIGKILL) and the directory
# removed on every exit.
tmp=$(mktemp -d "${TMPDIR:-/tmp}/zygote-bench-daemon.XXXXXX")
sock="$tmp/zygote.sock"
log="$out/daemon.log"
daemon_pid=
cleanup() {
    local rc=$?
    if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -TERM "$daemon_pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$daemon_pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$daemon_pid" 2>/dev/null; then
            echo "benches/daemon.sh: the daemon did not stop on SIGTERM; killing it" >&2
            kill -KILL "$daemon_pid" 2>/dev/null || true
        fi
        wait "$daemon_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$zygote" daemon --socket "$sock" --grace-secs 1 >"$log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do
    [ -S "$sock" ] && break
    kill -0 "$daemon_pid" 2>/dev/null || { cat "$log" >&2; die "the daemon exited at start-up (log above)"; }
    sleep 0.1
done
[ -S "$sock" ] || { cat "$log" >&2; die "the daemon did not create $sock within 10 s (log above)"; }
echo "daemon pid $daemon_pid on $sock (log: $log)" >&2

json=${JSON:-$out/daemon.json}
status=0
echo >&2
# The table goes to the terminal (stderr), the JSON report to the file.
"$zygote" bench-daemon --socket "$sock" --clients "$clients" --spawns "$spawns" --warmup "$warmup" \
    --blocks "$blocks" --json -- "${command_line[@]}" >"$json" || {
    status=1
    echo "benches/daemon.sh: zygote bench-daemon failed (report, if any: $json)" >&2
}

# A one-line summary from the JSON, whatever the CLI printed.
if [ -s "$json" ]; then
    python3 - "$json" <<'PY' || status=1
import json, sys
r = json.load(open(sys.argv[1]))
m = {x["method"]: x for x in r["methods"]}
d, p = m["daemon"], m["posix_spawn"]
fmt = lambda v, f: format(v, f) if v is not None else "n/a"
print(f"summary: {r['clients']} clients: daemon {d['spawns_per_sec']:.0f}/s p50 {d['p50_us']:.1f} us "
      f"p99 {d['p99_us']:.1f} us; posix_spawn {p['spawns_per_sec']:.0f}/s p50 {p['p50_us']:.1f} us "
      f"p99 {p['p99_us']:.1f} us; p50 ratio {fmt(r['p50_ratio'], '.3f')}, throughput "
      f"{fmt(r['throughput_ratio'], '.2f')}x; failures {r['failures']} -> {sys.argv[1]}")
sys.exit(1 if r["failures"] else 0)
PY
fi
exit $status
