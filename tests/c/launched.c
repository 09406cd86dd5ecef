/*
 * zygote integration test program for pre-started launchers: prints what a
 * process gets from its start that a launcher (exec'd before the request,
 * building the program's stack itself) must reproduce, in a form that is the
 * same for a direct exec: argv, environ, the working directory, the open fds
 * (number and type), AT_EXECFN, and checks that /proc/self/cmdline and
 * /proc/self/environ (the kernel's mm bounds), AT_RANDOM's 16 bytes, the
 * signal mask and the pending signals are right.
 *
 * Arguments: "wait" reads stdin to EOF before exiting (so a test can look at
 * /proc/PID meanwhile). Any failed check prints "FAIL ..." and exits 99.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
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

/* The whole of a /proc file. */
static size_t slurp(const char *path, char *buf, size_t cap) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    size_t n = 0;
    ssize_t r;
    while (n < cap && (r = read(fd, buf + n, cap - n)) > 0) n += (size_t)r;
    close(fd);
    return n;
}

/* NUL-separated strings of `list` equal the bytes of `got`. */
static int same_block(char **list, const char *got, size_t len) {
    size_t at = 0;
    for (char **p = list; *p; p++) {
        size_t l = strlen(*p) + 1;
        if (at + l > len || memcmp(got + at, *p, l) != 0) return 0;
        at += l;
    }
    return at == len;
}

static const char *status_field(const char *status, const char *name) {
    const char *p = strstr(status, name);
    return p ? p + strlen(name) : "";
}

int main(int argc, char **argv) {
    static char buf[1 << 20];
    int wait_stdin = 0;
    printf("argc=%d\n", argc);
    for (int i = 0; i < argc; i++) {
        printf("argv[%d]=[%s]\n", i, argv[i]);
        if (i > 0 && strcmp(argv[i], "wait") == 0) wait_stdin = 1;
    }
    for (char **e = environ; *e; e++) printf("env [%s]\n", *e);
    char cwd[4096];
    printf("cwd=[%s]\n", getcwd(cwd, sizeof cwd) ? cwd : "?");

    size_t n = slurp("/proc/self/cmdline", buf, sizeof buf);
    CHECK(same_block(argv, buf, n), "/proc/self/cmdline (%zu bytes) differs from argv", n);
    n = slurp("/proc/self/environ", buf, sizeof buf);
    CHECK(same_block(environ, buf, n), "/proc/self/environ (%zu bytes) differs from environ", n);

    const char *execfn = (const char *)getauxval(AT_EXECFN);
    CHECK(execfn && strcmp(execfn, argv[0]) == 0, "AT_EXECFN [%s] is not argv[0] [%s]", execfn ? execfn : "(null)", argv[0]);
    const unsigned char *rnd = (const unsigned char *)getauxval(AT_RANDOM);
    int zero = 1;
    for (int i = 0; rnd && i < 16; i++) zero &= rnd[i] == 0;
    CHECK(rnd && !zero, "AT_RANDOM missing or all zero");

    n = slurp("/proc/self/status", buf, sizeof buf - 1);
    buf[n] = 0;
    printf("SigBlk=%.16s\n", status_field(buf, "SigBlk:\t"));
    CHECK(strncmp(status_field(buf, "SigPnd:\t"), "0000000000000000", 16) == 0, "signals pending for the thread");
    CHECK(strncmp(status_field(buf, "ShdPnd:\t"), "0000000000000000", 16) == 0, "signals pending for the process");

    /* Open fds (other than the directory stream's own) and their types. */
    DIR *d = opendir("/proc/self/fd");
    int own = d ? dirfd(d) : -1;
    struct dirent *de;
    int fds[256], nfds = 0;
    while (d && (de = readdir(d)) && nfds < 256) {
        if (de->d_name[0] == '.') continue;
        int fd = atoi(de->d_name);
        if (fd != own) fds[nfds++] = fd;
    }
    if (d) closedir(d);
    for (int i = 0; i < nfds; i++)
        for (int j = i + 1; j < nfds; j++)
            if (fds[j] < fds[i]) { int t = fds[i]; fds[i] = fds[j]; fds[j] = t; }
    for (int i = 0; i < nfds; i++) {
        struct stat st;
        const char *kind = "?";
        if (fstat(fds[i], &st) == 0)
            kind = S_ISFIFO(st.st_mode) ? "fifo" : S_ISCHR(st.st_mode) ? "chr" : S_ISREG(st.st_mode) ? "reg" : S_ISDIR(st.st_mode) ? "dir" : "other";
        int cloexec = fcntl(fds[i], F_GETFD) & FD_CLOEXEC;
        printf("fd %d %s%s\n", fds[i], kind, cloexec ? " cloexec" : "");
    }
    fflush(stdout);
    if (wait_stdin)
        while (read(0, buf, sizeof buf) > 0) {}
    printf("failures=%d\n", failures);
    return failures ? 99 : 0;
}
