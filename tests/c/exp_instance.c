/*
 * zygote experiment and stress test program: a small program with relocated
 * data (a table of 4096 pointers, one R_X86_64_RELATIVE relocation each in a
 * PIE) that either stays alive or prints a deterministic report.
 *
 *   pause [WORD...]   initialise (check every table entry, allocate and touch
 *                     256 KiB of heap), print "ready" and wait in pause() until
 *                     a signal ends it; the words are ignored (tests use one
 *                     to find their instances in /proc).
 *   report [WORD...]  initialise, print "table ok N" and one line per word,
 *                     exit 0.
 *   pid               print the process id and exit 0 (output that differs
 *                     from run to run).
 * Output is flushed line by line. A wrong table entry exits 1; anything else
 * exits 3.
 *
 * Build: gcc -static-pie -O2 exp_instance.c (static PIE), or gcc -O2
 * exp_instance.c (dynamically linked PIE).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N 4096

static int objs[N];

/* N initialised pointers to distinct objects: N relative relocations. */
#define R1(i) &objs[(i)]
#define R2(i) R1(i), R1((i) + 1)
#define R4(i) R2(i), R2((i) + 2)
#define R8(i) R4(i), R4((i) + 4)
#define R16(i) R8(i), R8((i) + 8)
#define R32(i) R16(i), R16((i) + 16)
#define R64(i) R32(i), R32((i) + 32)
#define R128(i) R64(i), R64((i) + 64)
#define R256(i) R128(i), R128((i) + 128)
#define R512(i) R256(i), R256((i) + 256)
#define R1024(i) R512(i), R512((i) + 512)
#define R2048(i) R1024(i), R1024((i) + 1024)
#define R4096(i) R2048(i), R2048((i) + 2048)

int *table[N] = {R4096(0)};

static void init(void)
{
    for (int i = 0; i < N; i++) {
        if (table[i] != &objs[i]) {
            fprintf(stderr, "exp_instance: table[%d] is wrong\n", i);
            exit(1);
        }
    }
    size_t heap = 256 * 1024;
    volatile char *p = malloc(heap);
    if (p == NULL) {
        fprintf(stderr, "exp_instance: malloc failed\n");
        exit(1);
    }
    for (size_t i = 0; i < heap; i += 4096)
        p[i] = (char)i;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && strcmp(argv[1], "pause") == 0) {
        init();
        printf("ready\n");
        for (;;)
            pause();
    }
    if (argc >= 2 && strcmp(argv[1], "report") == 0) {
        init();
        printf("table ok %d\n", N);
        for (int i = 2; i < argc; i++)
            printf("word %d: %s\n", i - 1, argv[i]);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "pid") == 0) {
        printf("pid %d\n", (int)getpid());
        return 0;
    }
    return 3;
}
