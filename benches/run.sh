#!/usr/bin/env bash
# Build the benchmark programs and zygote (release), then run `zygote bench` on each.
#
# Usage: benches/run.sh [PROGRAM...]
#   PROGRAM: tiny, bigrel-ends, bigrel, bigrel-scan, bigcxx (built here), true (/bin/true),
#            python3 (python3 -c pass), clang (clang-14 --version, if installed)
#   default: all of them (clang only when clang-14 is installed)
# Environment:
#   ITERATIONS   timed rounds per program (default 1000)
#   WARMUP       untimed warm-up rounds   (default 20)
#   ENTRIES      pointers in bigrel's table (default 500000)
#
# Output: the tables on the terminal; the JSON reports in target/bench/PROGRAM.json;
# the programs themselves in target/bench/. Exits non-zero if any run failed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out="$root/target/bench"
iterations=${ITERATIONS:-1000}
warmup=${WARMUP:-20}
entries=${ENTRIES:-500000}
programs=("$@")
if [ ${#programs[@]} -eq 0 ]; then
    programs=(tiny bigrel-ends bigrel bigrel-scan bigcxx true python3)
    command -v clang-14 >/dev/null && programs+=(clang)
fi
# The command line of each program: built ones run from target/bench.
cmdline() {
    case $1 in
        true) echo /bin/true ;;
        python3) if [ -x /usr/bin/python3 ]; then echo "/usr/bin/python3 -c pass"; else echo "$(command -v python3) -c pass"; fi ;;
        clang) echo "$(command -v clang-14) --version" ;;
        *) echo "$out/$1" ;;
    esac
}

die() { echo "benches/run.sh: $*" >&2; exit 1; }
for tool in gcc g++ python3 readelf cargo; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
mkdir -p "$out"

# shellcheck source=benches/programs.sh
. "$root/benches/programs.sh"

for p in "${programs[@]}"; do
    case $p in
        true | python3 | clang) ;;
        *) build_program "$p" ;;
    esac
done

(cd "$root" && cargo build --release --quiet) || die "cargo build --release failed"
zygote="$root/target/release/zygote"

status=0
for p in "${programs[@]}"; do
    echo
    json="$out/$p.json"
    # The table goes to the terminal, the JSON report to the file.
    n=$iterations
    # Slow programs get fewer rounds (each is tens of milliseconds).
    case $p in python3 | clang) n=$(( iterations / 10 > 20 ? iterations / 10 : 20 )) ;; esac
    # shellcheck disable=SC2046 # the command line is split on purpose
    if ! "$zygote" bench --iterations "$n" --warmup "$warmup" --json -- $(cmdline "$p") >"$json"; then
        status=1
        echo "benches/run.sh: zygote bench failed for $p (report, if any: $json)" >&2
    fi
    # A one-line summary from the JSON, whatever the CLI printed.
    if [ -s "$json" ]; then
        python3 - "$json" <<'PY' || status=1
import json, sys
r = json.load(open(sys.argv[1]))
m = {x["method"]: x for x in r["methods"]}
z, p = m["zygote"], m["posix_spawn"]
ratio = r["ratio"]
print(f"summary {r['program']}: zygote median {z['median_us']:.1f} us, posix_spawn median "
      f"{p['median_us']:.1f} us, ratio {ratio:.3f} (speed-up {r['speedup']:.2f}x), "
      f"failures {r['failures']} -> {sys.argv[1]}" if ratio is not None else
      f"summary {r['program']}: no ratio; failures {r['failures']}")
sys.exit(1 if r["failures"] else 0)
PY
    fi
done
exit $status
