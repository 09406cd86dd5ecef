# Shared by benches/run.sh and benches/daemon.sh (sourced): builds the benchmark
# programs into $out. Needs $root, $out, $entries and a die() function.

# Keep the relocations as R_X86_64_RELATIVE entries (newer toolchains may default to RELR).
ldflags=()
if ld --help 2>/dev/null | grep -q nopack-relative-relocs; then
    ldflags=(-Wl,-z,nopack-relative-relocs)
fi

relative_count() { readelf -rW "$1" | grep -c 'R_X86_64_RELATIVE' || true; }

build_tiny() {
    gcc -O2 -static-pie "${ldflags[@]}" -o "$out/tiny" "$root/benches/programs/tiny.c" \
        || die "gcc -static-pie failed for tiny.c (static glibc, libc6-dev, needed)"
}

# build_bigrel NAME [gen_bigrel.py options]
build_bigrel() {
    local name=$1
    shift
    local src="$out/$name.c"
    # Regenerate only when the generator or the entry count changed (compiling takes seconds).
    if [ ! -f "$src" ] || [ "$root/benches/gen_bigrel.py" -nt "$src" ] \
        || ! grep -q "^#define N $entries\$" "$src"; then
        python3 "$root/benches/gen_bigrel.py" --entries "$entries" "$@" "$src"
    fi
    if [ ! -x "$out/$name" ] || [ "$src" -nt "$out/$name" ]; then
        gcc -O0 -static-pie "${ldflags[@]}" -o "$out/$name" "$src" || die "gcc failed for $name.c"
    fi
    local n
    n=$(relative_count "$out/$name")
    [ "$n" -ge "$entries" ] || die "$name has $n R_X86_64_RELATIVE relocations, expected >= $entries"
}

# build_bigcxx: a clang-sized dynamically linked C++ program (gen_bigcxx.py):
# a shared library with >= 600,000 relocations and allocating constructors.
build_bigcxx() {
    local dir="$out/bigcxx.d"
    if [ ! -f "$dir/libbigcxx.cpp" ] || [ "$root/benches/gen_bigcxx.py" -nt "$dir/libbigcxx.cpp" ]; then
        python3 "$root/benches/gen_bigcxx.py" "$dir"
    fi
    if [ ! -f "$dir/libbigcxx.so" ] || [ "$dir/libbigcxx.cpp" -nt "$dir/libbigcxx.so" ]; then
        g++ -O0 -shared -fPIC "${ldflags[@]}" -o "$dir/libbigcxx.so" "$dir/libbigcxx.cpp" || die "g++ failed for libbigcxx"
    fi
    g++ -O1 -o "$out/bigcxx" "$dir/bigcxx.cpp" -L"$dir" -lbigcxx -Wl,-rpath,"$dir" || die "g++ failed for bigcxx"
    local n
    n=$(readelf -rW "$dir/libbigcxx.so" | grep -c 'R_X86_64_' || true)
    [ "$n" -ge 500000 ] || die "libbigcxx.so has $n relocations, expected >= 500000"
}

# build_program NAME: one of the built programs; checks it runs on its own.
build_program() {
    case $1 in
        tiny) build_tiny ;;
        bigrel-ends) build_bigrel bigrel-ends --touch ends ;;
        bigrel) build_bigrel bigrel --touch sparse ;;
        bigrel-scan) build_bigrel bigrel-scan --touch scan ;;
        bigcxx) build_bigcxx ;;
        *) die "unknown program '$1' (tiny, bigrel-ends, bigrel, bigrel-scan, bigcxx)" ;;
    esac
    "$out/$1" >/dev/null || die "$out/$1 does not run on its own"
    echo "built $out/$1: $(relative_count "$out/$1") R_X86_64_RELATIVE relocations, $(stat -c %s "$out/$1") bytes" >&2
}
