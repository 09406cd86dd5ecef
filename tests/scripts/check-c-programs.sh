#!/bin/sh
# Build the integration-test C programs the way the Rust tests do and run
# each once directly (no zygote), to tell a broken toolchain or test
# program apart from a zygote bug. Usage: tests/scripts/check-c-programs.sh [OUTDIR]
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$(mktemp -d)}
mkdir -p "$out"
c=$here/c
musl=/usr/lib/x86_64-linux-musl
gccdir=$(dirname "$(gcc -print-libgcc-file-name)")

gcc -static-pie -O2 -pthread "$c/spie_test.c" -lm -o "$out/spie_test.glibc-spie"
gcc -static-pie -O2 -pthread -Wl,-z,pack-relative-relocs "$c/spie_test.c" -lm \
    -o "$out/spie_test.glibc-spie-relr"
readelf -d "$out/spie_test.glibc-spie-relr" | grep -q '(RELR)' || {
    echo "no DT_RELR in the RELR build" >&2
    exit 1
}
gcc -static -no-pie -O2 -pthread "$c/spie_test.c" -lm -o "$out/spie_test.glibc-static"
musl-gcc -fPIE -O2 -c "$c/spie_test.c" -o "$out/spie_test.musl.o"
gcc -static-pie -nostdlib -nostartfiles "$musl/rcrt1.o" "$musl/crti.o" "$gccdir/crtbeginS.o" \
    "$out/spie_test.musl.o" -L"$musl" -lc "$gccdir/libgcc.a" "$musl/libc.a" \
    "$gccdir/crtendS.o" "$musl/crtn.o" -o "$out/spie_test.musl-spie"
for p in signal cow fds evict; do
    gcc -static-pie -O2 "$c/$p.c" -o "$out/$p.spie"
done

for v in glibc-spie glibc-spie-relr glibc-static musl-spie; do
    if readelf -l "$out/spie_test.$v" | grep -q INTERP; then
        echo "spie_test.$v has PT_INTERP" >&2
        exit 1
    fi
    rc=0
    env -i ZT_A=1 "$out/spie_test.$v" a "b c" exit=3 >"$out/spie_test.$v.out" 2>&1 || rc=$?
    [ "$rc" = 3 ] || { echo "spie_test.$v: exit $rc" >&2; cat "$out/spie_test.$v.out" >&2; exit 1; }
    grep -q '^failures=0$' "$out/spie_test.$v.out"
done
rc=0; "$out/cow.spie" || rc=$?
[ "$rc" = 17 ] || { echo "cow: exit $rc" >&2; exit 1; }
# (this shell may have inherited other fds; only check that 5 and 9 show up)
fds=" $("$out/fds.spie" 5</dev/null 9</dev/null) "
case "$fds" in " 0 1 2 "*) ;; *) echo "fds listing wrong: $fds" >&2; exit 1 ;; esac
case "$fds" in *" 5 "*) ;; *) echo "fds listing lacks 5: $fds" >&2; exit 1 ;; esac
case "$fds" in *" 9 "*) ;; *) echo "fds listing lacks 9: $fds" >&2; exit 1 ;; esac
for s in abort:134 kill:137 term:143; do
    rc=0; "$out/signal.spie" "${s%%:*}" >/dev/null 2>&1 || rc=$?
    [ "$rc" = "${s##*:}" ] || { echo "signal ${s%%:*}: exit $rc" >&2; exit 1; }
done
"$out/evict.spie" >"$out/evict.out" & pid=$!
sleep 0.2
kill -TERM "$pid"
wait "$pid"
grep -q '^done$' "$out/evict.out"
echo "all C test programs OK (built in $out)"
