/*
 * zygote integration test program: exercises the parts of a static(-PIE)
 * C runtime that a loader must get right, and prints a deterministic report.
 *
 * Checks malloc, TLS (__thread, initialised and zero-initialised), pthreads,
 * ifunc'd string functions (glibc), libm, the auxiliary vector (AT_PAGESZ,
 * AT_PHDR/AT_PHNUM pointing at our program headers, AT_ENTRY == _start,
 * AT_RANDOM), argv, the whole environment (sorted) and the cwd.
 *
 * An argument "exit=N" makes the program exit with status N (default 0).
 * Any internal check failure prints "FAIL ..." and makes it exit with 99.
 *
 * Build: gcc -static-pie -O2 spie_test.c -o x -pthread -lm (and variants).
 */
#define _GNU_SOURCE
#include <elf.h>
#include <link.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

extern char **environ;
extern char _start[];
extern const ElfW(Ehdr) __ehdr_start;

static int failures;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            failures++;                                                        \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);             \
            printf(__VA_ARGS__);                                               \
            printf("\n");                                                      \
        }                                                                      \
    } while (0)

/* TLS: one initialised (.tdata) and one zero-initialised (.tbss) object. */
static __thread long tls_value = 1234;
static __thread char tls_buf[256];

/* Relocated data: pointers to strings and functions (RELATIVE relocs in PIE). */
static const char *const words[] = {"alpha", "beta", "gamma", "delta"};
static double (*const math_fns[])(double) = {sqrt, sin};

struct thread_arg {
    int index;
    long result;
};

static void *thread_main(void *p)
{
    struct thread_arg *arg = p;
    /* Every thread must see the pristine TLS image. */
    long base = tls_value;
    int zero = 1;
    for (size_t i = 0; i < sizeof tls_buf; i++)
        zero &= tls_buf[i] == 0;
    tls_value = base + arg->index * 1000;
    memset(tls_buf, 'a' + arg->index, sizeof tls_buf - 1);
    arg->result = tls_value + (long)strlen(tls_buf) + (zero ? 0 : 1000000);
    return NULL;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    int exit_code = 0;

    /* argv */
    printf("argc=%d\n", argc);
    for (int i = 1; i < argc; i++) {
        printf("argv[%d]=<%s>\n", i, argv[i]);
        if (strncmp(argv[i], "exit=", 5) == 0)
            exit_code = atoi(argv[i] + 5);
    }
    CHECK(argv[argc] == NULL, "argv not NULL-terminated");
    /* argv[0] is reported only by basename: the path may differ legitimately */
    const char *slash = strrchr(argv[0], '/');
    printf("argv0-base=<%s>\n", slash ? slash + 1 : argv[0]);

    /* environment, sorted */
    size_t nenv = 0;
    while (environ[nenv])
        nenv++;
    char **envs = malloc((nenv + 1) * sizeof *envs);
    CHECK(envs != NULL, "malloc env");
    memcpy(envs, environ, nenv * sizeof *envs);
    qsort(envs, nenv, sizeof *envs, cmp_str);
    printf("envc=%zu\n", nenv);
    for (size_t i = 0; i < nenv; i++)
        printf("env: %s\n", envs[i]);
    free(envs);
    const char *za = getenv("ZT_A");
    const char *zb = getenv("ZT_B");
    printf("ZT_A=%s\nZT_B=%s\n", za ? za : "(unset)", zb ? zb : "(unset)");

    char cwd[4096];
    CHECK(getcwd(cwd, sizeof cwd) != NULL, "getcwd");
    printf("cwd=%s\n", cwd);

    /* malloc: small and large (mmap-backed) allocations */
    size_t n = 1 << 20;
    unsigned char *big = malloc(n);
    CHECK(big != NULL, "malloc big");
    unsigned long sum = 0;
    for (size_t i = 0; i < n; i++)
        big[i] = (unsigned char)(i * 7);
    for (size_t i = 0; i < n; i++)
        sum += big[i];
    free(big);
    char **small = calloc(1000, sizeof *small);
    CHECK(small != NULL, "calloc");
    for (int i = 0; i < 1000; i++) {
        small[i] = malloc(16 + i % 64);
        CHECK(small[i] != NULL, "malloc small");
        snprintf(small[i], 16, "%d", i);
    }
    for (int i = 0; i < 1000; i++) {
        sum += (unsigned long)atoi(small[i]);
        free(small[i]);
    }
    free(small);
    printf("malloc-sum=%lu\n", sum);

    /* TLS in the main thread */
    int zero = 1;
    for (size_t i = 0; i < sizeof tls_buf; i++)
        zero &= tls_buf[i] == 0;
    printf("tls main=%ld zero=%d\n", tls_value, zero);
    CHECK(tls_value == 1234 && zero, "initial TLS image wrong");
    tls_value = 1;

    /* pthreads */
    enum { NT = 4 };
    pthread_t th[NT];
    struct thread_arg args[NT];
    for (int i = 0; i < NT; i++) {
        args[i].index = i + 1;
        args[i].result = -1;
        CHECK(pthread_create(&th[i], NULL, thread_main, &args[i]) == 0, "pthread_create");
    }
    for (int i = 0; i < NT; i++) {
        CHECK(pthread_join(th[i], NULL) == 0, "pthread_join");
        printf("thread %d result=%ld\n", i + 1, args[i].result);
    }
    printf("tls main after threads=%ld\n", tls_value);
    CHECK(tls_value == 1, "threads clobbered the main thread's TLS");

    /* string functions (ifunc-resolved in glibc: IRELATIVE relocs) */
    char buf[128];
    volatile size_t off = 3; /* defeat constant folding */
    strcpy(buf, "the quick brown fox jumps over the lazy dog");
    char copy[128];
    memcpy(copy, buf + off, strlen(buf + off) + 1);
    const char *q = strchr(copy, 'q');
    const char *z = strrchr(copy, 'z');
    printf("strlen=%zu copy=<%s> strchr=%td strrchr=%td memcmp=%d\n", strlen(copy), copy,
           q ? q - copy : -1, z ? z - copy : -1, memcmp(buf + off, copy, strlen(copy)) == 0);
    for (int i = 0; i < 4; i++)
        printf("word[%d]=%s\n", i, words[i]);

    /* libm, through relocated function pointers and directly */
    volatile double x = 2.0, y = 1.0;
    printf("sqrt(2)=%.9f sin(1)=%.9f fnptr=%.9f,%.9f\n", sqrt(x), sin(y), math_fns[0](x),
           math_fns[1](y));

    /* auxiliary vector */
    unsigned long pagesz = getauxval(AT_PAGESZ);
    unsigned long phdr = getauxval(AT_PHDR);
    unsigned long phnum = getauxval(AT_PHNUM);
    unsigned long phent = getauxval(AT_PHENT);
    unsigned long entry = getauxval(AT_ENTRY);
    unsigned long rnd = getauxval(AT_RANDOM);
    printf("AT_PAGESZ=%lu sysconf=%ld\n", pagesz, sysconf(_SC_PAGESIZE));
    printf("AT_PHDR=%s AT_PHENT=%lu\n", phdr ? "nonzero" : "ZERO", phent);
    printf("AT_ENTRY==_start: %s\n", entry == (unsigned long)_start ? "yes" : "NO");
    printf("AT_RANDOM=%s\n", rnd ? "nonzero" : "ZERO");
    CHECK(pagesz == 4096, "AT_PAGESZ=%lu", pagesz);
    CHECK(phdr != 0 && phnum > 0, "AT_PHDR/AT_PHNUM missing");
    CHECK(phent == sizeof(ElfW(Phdr)), "AT_PHENT=%lu", phent);
    if (phdr && phnum) {
        /* AT_PHDR must point at our own program headers: there is a PT_LOAD
         * and, if there is a PT_PHDR, its (biased) vaddr is AT_PHDR itself. */
        const ElfW(Phdr) *ph = (const ElfW(Phdr) *)phdr;
        int loads = 0;
        for (unsigned long i = 0; i < phnum; i++) {
            if (ph[i].p_type == PT_LOAD)
                loads++;
        }
        /* The linker-provided __ehdr_start is our own ELF header (mapped with
         * the first PT_LOAD): AT_PHDR must be exactly ehdr + e_phoff. */
        unsigned long expect = (unsigned long)&__ehdr_start + __ehdr_start.e_phoff;
        printf("phdrs: PT_LOAD present=%s AT_PHDR==ehdr+e_phoff: %s AT_PHNUM==e_phnum: %s\n",
               loads > 0 ? "yes" : "NO", phdr == expect ? "yes" : "NO",
               phnum == __ehdr_start.e_phnum ? "yes" : "NO");
        CHECK(loads > 0, "no PT_LOAD at AT_PHDR");
        CHECK(phdr == expect, "AT_PHDR %#lx, expected %#lx", phdr, expect);
        CHECK(phnum == __ehdr_start.e_phnum, "AT_PHNUM %lu", phnum);
    }
    if (rnd) {
        const unsigned char *r = (const unsigned char *)rnd;
        int nonzero = 0;
        for (int i = 0; i < 16; i++)
            nonzero |= r[i];
        CHECK(nonzero, "AT_RANDOM bytes are all zero");
    }

    fprintf(stderr, "spie_test stderr: argc=%d exit=%d failures=%d\n", argc, exit_code,
            failures);
    printf("failures=%d\n", failures);
    if (failures)
        return 99;
    return exit_code;
}
