/*
 * zygote integration test program for dynamically linked programs (glibc):
 * exercises what a restore from an entry-point snapshot must get right and
 * prints a deterministic report (no pids, tids or addresses on stdout).
 *
 * Checks argv, argc, environ (as passed, and sorted), getenv (including that
 * the prototype's LD_BIND_NOW=1 is not visible), program_invocation_name and
 * program_invocation_short_name, getpid == gettid and the thread block's
 * cached tid (an error-checking mutex records its owner from it),
 * pthread_create/join, fork + waitpid, raise and pthread_kill with handlers,
 * clock_gettime (vDSO), malloc growing the brk heap by 64 MiB in small
 * chunks, a large mmap'd malloc, errno in two threads, the loaded objects
 * (dl_iterate_phdr names, the vDSO and the program headers agreeing with
 * the auxiliary vector, dladdr), stdio to stderr and atexit handlers (run
 * in reverse order at exit).
 *
 * Arguments: "exit=N" exits with status N (through exit(), so the atexit
 * handlers run); "kill=N" flushes and raises signal N with its default
 * action. Any failed check prints "FAIL ..." and the exit status is 99.
 *
 * Build: gcc -O1 -pthread -rdynamic showme.c -o showme (a dynamic PIE).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

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

static pid_t sys_gettid(void) { return (pid_t)syscall(SYS_gettid); }

static void at_exit_first(void) { printf("atexit: registered first, runs last\n"); fflush(stdout); }
static void at_exit_second(void) { printf("atexit: registered second, runs first\n"); }

static volatile sig_atomic_t got_usr1, got_usr2;
static void on_usr1(int sig) { got_usr1 = sig; }
static void on_usr2(int sig) { got_usr2 = sig; }

struct thread_arg {
    pid_t main_pid;
    int other_tid;
    int errno_seen;
    long sum;
};

static void *thread_main(void *p)
{
    struct thread_arg *a = p;
    a->other_tid = sys_gettid() != a->main_pid && getpid() == a->main_pid;
    errno = 0;
    if (close(-1) != 0)
        a->errno_seen = errno; /* EBADF, in this thread's errno */
    long s = 0;
    for (int i = 1; i <= 1000; i++)
        s += i;
    a->sum = s;
    return NULL;
}

struct objects {
    int count;
    int main_phdr_ok;
    int vdso_ok;
    char names[16][64];
};

static int on_object(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    struct objects *o = data;
    const char *name = info->dlpi_name;
    if (o->count == 0)
        o->main_phdr_ok = info->dlpi_phdr == (const ElfW(Phdr) *)getauxval(AT_PHDR) &&
                          info->dlpi_phnum == getauxval(AT_PHNUM);
    if (strstr(name, "vdso"))
        o->vdso_ok = info->dlpi_addr == getauxval(AT_SYSINFO_EHDR);
    if (o->count < 16) {
        const char *base = strrchr(name, '/');
        snprintf(o->names[o->count], sizeof o->names[0], "%s", base ? base + 1 : name);
    }
    o->count++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    int exit_code = 0;
    int kill_sig = 0;

    /* argv and argc */
    int counted = 0;
    while (argv[counted])
        counted++;
    CHECK(counted == argc, "argc %d but %d argv entries", argc, counted);
    printf("argc=%d\n", argc);
    for (int i = 0; i < argc; i++) {
        printf("argv[%d]=[%s]\n", i, argv[i]);
        if (strncmp(argv[i], "exit=", 5) == 0)
            exit_code = atoi(argv[i] + 5);
        if (strncmp(argv[i], "kill=", 5) == 0)
            kill_sig = atoi(argv[i] + 5);
    }
    printf("program_invocation_name=[%s]\n", program_invocation_name);
    printf("program_invocation_short_name=[%s]\n", program_invocation_short_name);
    CHECK(program_invocation_name == argv[0], "program_invocation_name is not argv[0]");
    const char *slash = strrchr(argv[0], '/');
    CHECK(program_invocation_short_name == (slash ? slash + 1 : argv[0]),
          "program_invocation_short_name is not the basename within argv[0]");

    /* The environment: as passed, then sorted; getenv. */
    int n = 0;
    while (environ[n])
        n++;
    printf("environ: %d entries\n", n);
    for (int i = 0; i < n; i++)
        printf("env[%d]=[%s]\n", i, environ[i]);
    char **sorted = malloc(sizeof *sorted * (size_t)(n + 1));
    memcpy(sorted, environ, sizeof *sorted * (size_t)n);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_str);
    for (int i = 0; i < n; i++)
        printf("sorted env: [%s]\n", sorted[i]);
    free(sorted);
    const char *x = getenv("X");
    printf("getenv(X)=%s%s%s\n", x ? "[" : "", x ? x : "(null)", x ? "]" : "");
    const char *bind = getenv("LD_BIND_NOW");
    printf("getenv(LD_BIND_NOW)=%s\n", bind ? bind : "(null)");
    CHECK(setenv("SHOWME_SET", "yes", 1) == 0, "setenv");
    printf("after setenv: %s\n", getenv("SHOWME_SET"));

    /* pid, tid and the thread block's cached tid. */
    pid_t pid = getpid();
    printf("getpid==gettid: %d\n", pid == sys_gettid());
    printf("gettid()==syscall: %d\n", gettid() == sys_gettid());
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_t m;
    pthread_mutex_init(&m, &ma);
    CHECK(pthread_mutex_lock(&m) == 0, "lock");
    printf("errorcheck mutex owner is this thread: %d\n", m.__data.__owner == sys_gettid());
    printf("relock gives EDEADLK: %d\n", pthread_mutex_lock(&m) == EDEADLK);
    CHECK(pthread_mutex_unlock(&m) == 0, "unlock");
    printf("second unlock gives EPERM: %d\n", pthread_mutex_unlock(&m) == EPERM);

    /* errno (TLS) */
    errno = 0;
    int fd = open("/nonexistent/zygote-showme", O_RDONLY);
    int e = errno;
    printf("open(nonexistent)=%d errno=%s\n", fd, strerror(e));

    /* A thread. */
    struct thread_arg ta = {.main_pid = pid};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, thread_main, &ta) == 0, "pthread_create");
    CHECK(pthread_join(t, NULL) == 0, "pthread_join");
    printf("thread: own tid %d, errno %s, sum %ld\n", ta.other_tid, strerror(ta.errno_seen), ta.sum);
    printf("main errno unchanged by the thread: %d\n", errno == e);

    /* Signals: raise and pthread_kill (the latter uses the cached tid). */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction USR1");
    sa.sa_handler = on_usr2;
    CHECK(sigaction(SIGUSR2, &sa, NULL) == 0, "sigaction USR2");
    CHECK(raise(SIGUSR1) == 0, "raise");
    CHECK(pthread_kill(pthread_self(), SIGUSR2) == 0, "pthread_kill");
    printf("raise(SIGUSR1) handled: %d\n", got_usr1 == SIGUSR1);
    printf("pthread_kill(self, SIGUSR2) handled: %d\n", got_usr2 == SIGUSR2);

    /* fork */
    fflush(stdout);
    fflush(stderr);
    pid_t child = fork();
    if (child == 0) {
        int ok = getpid() != pid && getpid() == sys_gettid() && getppid() == pid;
        _exit(ok ? 42 : 1);
    }
    CHECK(child > 0, "fork: %s", strerror(errno));
    int st = 0;
    CHECK(waitpid(child, &st, 0) == child, "waitpid");
    printf("fork: child exited %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);

    /* Clocks (vDSO). */
    struct timespec a, b, r;
    CHECK(clock_gettime(CLOCK_MONOTONIC, &a) == 0, "clock_gettime");
    CHECK(clock_gettime(CLOCK_MONOTONIC, &b) == 0, "clock_gettime");
    CHECK(clock_gettime(CLOCK_REALTIME, &r) == 0, "clock_gettime realtime");
    printf("monotonic non-decreasing: %d\n", b.tv_sec > a.tv_sec || (b.tv_sec == a.tv_sec && b.tv_nsec >= a.tv_nsec));
    printf("realtime after 2020: %d\n", r.tv_sec > 1577836800);
    printf("time() agrees with realtime: %d\n", time(NULL) - r.tv_sec <= 5 && time(NULL) >= r.tv_sec);

    /* The heap: 64 MiB in 1 KiB chunks grows the brk heap far past its start. */
    char *brk0 = sbrk(0);
    enum { CHUNK = 1024, COUNT = 64 * 1024 };
    char **chunks = malloc(sizeof *chunks * COUNT);
    CHECK(chunks != NULL, "malloc chunks");
    for (int i = 0; i < COUNT; i++) {
        chunks[i] = malloc(CHUNK);
        if (!chunks[i]) {
            CHECK(0, "malloc %d", i);
            break;
        }
        memset(chunks[i], (char)(i * 7), CHUNK);
    }
    char *brk1 = sbrk(0);
    long bad = 0;
    for (int i = 0; i < COUNT; i++) {
        if (!chunks[i])
            break;
        if (chunks[i][0] != (char)(i * 7) || chunks[i][CHUNK - 1] != (char)(i * 7))
            bad++;
    }
    printf("heap: 64 MiB in small chunks, bad chunks %ld, brk grew >= 64 MiB: %d\n", bad,
           brk1 - brk0 >= 64L * 1024 * 1024);
    for (int i = 0; i < COUNT; i++)
        free(chunks[i]);
    free(chunks);
    char *big = malloc(32 << 20);
    CHECK(big != NULL, "malloc 32 MiB");
    memset(big, 0x5a, 32 << 20);
    printf("large malloc: %d\n", big[0] == 0x5a && big[(32 << 20) - 1] == 0x5a);
    free(big);
    char *dup = strdup("duplicated string");
    printf("strdup: %s\n", dup);
    free(dup);

    /* Loaded objects. */
    struct objects objs;
    memset(&objs, 0, sizeof objs);
    dl_iterate_phdr(on_object, &objs);
    printf("loaded objects: %d\n", objs.count);
    for (int i = 0; i < objs.count && i < 16; i++)
        printf("object %d: [%s]\n", i, objs.names[i]);
    printf("main object's phdrs are AT_PHDR/AT_PHNUM: %d\n", objs.main_phdr_ok);
    printf("vDSO object is at AT_SYSINFO_EHDR: %d\n", objs.vdso_ok);
    Dl_info di;
    CHECK(dladdr((void *)printf, &di) != 0, "dladdr(printf)");
    const char *lib = di.dli_fname ? strrchr(di.dli_fname, '/') : NULL;
    printf("dladdr(printf): %s in %s\n", di.dli_sname ? di.dli_sname : "?", lib ? lib + 1 : "?");
    void *self = dlopen(NULL, RTLD_NOW);
    printf("dlsym(main program, \"main\") is main: %d\n", self && dlsym(self, "main") == (void *)main);

    /* stderr */
    fprintf(stderr, "showme: to stderr, argc=%d\n", argc);

    /* atexit (runs in reverse order of registration at exit()). */
    CHECK(atexit(at_exit_first) == 0, "atexit");
    CHECK(atexit(at_exit_second) == 0, "atexit");

    printf("failures=%d\n", failures);
    if (failures)
        exit_code = 99;
    if (kill_sig) {
        fflush(stdout);
        fflush(stderr);
        signal(kill_sig, SIG_DFL);
        raise(kill_sig);
        printf("still alive after signal %d\n", kill_sig);
    }
    exit(exit_code);
}
