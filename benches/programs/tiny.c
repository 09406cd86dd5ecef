/* tiny.c: the smallest useful benchmark target.
 *
 * Built as a glibc static-PIE (`gcc -O2 -static-pie`), so the zygote relocates
 * it once and every spawn only maps the cached image. It writes one line to
 * stdout (the benchmark sends stdout to /dev/null) and exits 0, which checks
 * that argv, the stack and stdio work in the spawned process.
 */
#include <stdio.h>

int main(int argc, char **argv) {
    (void)argc;
    printf("hello from %s\n", argv[0] ? argv[0] : "tiny");
    return 0;
}
