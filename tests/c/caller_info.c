/*
 * zygote integration test program for caller-side spawning (zygote-exec and
 * masquerade links): prints, one line each, what execve gives a process and
 * what it inherits from its caller, so that a run through the thin client
 * can be compared byte for byte with a direct exec from the same parent:
 * argv, the environment, AT_EXECFN and AT_SECURE, ids, comm, /proc/self/exe,
 * open fds, the parent, process group and session, umask, nice,
 * RLIMIT_NOFILE, ignored and blocked signals, capabilities, cgroups and
 * the mount namespace. Its own pid only with CALLER_INFO_PID=1 (it differs per run).
 *
 * Arguments it acts on (after printing): "err=TEXT" writes TEXT to stderr,
 * "exit=N" exits with N, "kill=N" raises signal N, "cat" copies stdin to
 * stdout.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

static void file(const char *label, const char *path) {
    char buf[4096];
    FILE *f = fopen(path, "r");
    if (!f) {
        printf("%s unreadable\n", label);
        return;
    }
    while (fgets(buf, sizeof buf, f)) printf("%s %s", label, buf);
    fclose(f);
}

static void status_lines(void) {
    static const char *keys[] = {"SigIgn:", "SigBlk:", "NoNewPrivs:", "CapPrm:", "CapEff:"};
    char line[512];
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return;
    while (fgets(line, sizeof line, f))
        for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
            if (strncmp(line, keys[i], strlen(keys[i])) == 0) fputs(line, stdout);
    fclose(f);
}

static void link_line(const char *label, const char *path) {
    char buf[4096];
    ssize_t n = readlink(path, buf, sizeof buf - 1);
    if (n < 0) n = 0;
    buf[n] = 0;
    printf("%s %s\n", label, buf);
}

static void fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return;
    printf("fds");
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && atoi(e->d_name) != dirfd(d)) printf(" %s", e->d_name);
    printf("\n");
    closedir(d);
}

int main(int argc, char **argv) {
    printf("argc %d\n", argc);
    for (int i = 0; i < argc; i++) printf("argv[%d] %s\n", i, argv[i]);
    for (char **e = environ; *e; e++) printf("env %s\n", *e);
    const char *execfn = (const char *)getauxval(AT_EXECFN);
    printf("execfn %s\n", execfn ? execfn : "(none)");
    printf("secure %lu\n", getauxval(AT_SECURE));
    printf("uid %u euid %u gid %u egid %u\n", getuid(), geteuid(), getgid(), getegid());
    file("comm", "/proc/self/comm");
    link_line("exe", "/proc/self/exe");
    fds();
    const char *pid = getenv("CALLER_INFO_PID");
    if (pid && *pid == '1') printf("pid %d\n", (int)getpid());
    printf("ppid %d pgid %d sid %d\n", (int)getppid(), (int)getpgrp(), (int)getsid(0));
    mode_t m = umask(0);
    umask(m);
    printf("umask %03o\n", (unsigned)m);
    printf("nice %d\n", getpriority(PRIO_PROCESS, 0));
    struct rlimit l;
    getrlimit(RLIMIT_NOFILE, &l);
    printf("nofile %llu %llu\n", (unsigned long long)l.rlim_cur, (unsigned long long)l.rlim_max);
    status_lines();
    file("cgroup", "/proc/self/cgroup");
    struct stat st;
    if (stat("/proc/self/ns/mnt", &st) == 0)
        printf("mntns %llu\n", (unsigned long long)st.st_ino);
    else
        printf("mntns ?\n");
    fflush(stdout);
    fprintf(stderr, "caller_info: %d args\n", argc);
    int code = 0;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "err=", 4) == 0) fprintf(stderr, "%s\n", argv[i] + 4);
        if (strncmp(argv[i], "exit=", 5) == 0) code = atoi(argv[i] + 5);
        if (strcmp(argv[i], "cat") == 0) {
            char buf[4096];
            size_t n;
            while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) fwrite(buf, 1, n, stdout);
        }
        if (strncmp(argv[i], "kill=", 5) == 0) {
            fflush(stdout);
            signal(atoi(argv[i] + 5), SIG_DFL);
            raise(atoi(argv[i] + 5));
        }
    }
    return code;
}
