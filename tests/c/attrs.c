/*
 * zygote integration test program: prints what execve passes on from the
 * caller and what the kernel decides at exec, one line each, so that a run
 * through the daemon can be compared with a direct exec under the same
 * restrictions: effective ids, no-new-privs, seccomp, capability sets, umask,
 * every rlimit, nice, oom_score_adj, CPU affinity, I/O priority, personality,
 * cgroups, the mount namespace, dumpability, and a payload string kept in
 * read-only data (a test rewrites it in a copy of this file).
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char payload[] = "PAYLOAD-GENUINE";

static void status_lines(void) {
    static const char *keys[] = {"NoNewPrivs:", "Seccomp:", "CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"};
    char line[512];
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return;
    while (fgets(line, sizeof line, f))
        for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
            if (strncmp(line, keys[i], strlen(keys[i])) == 0) fputs(line, stdout);
    fclose(f);
}

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

int main(int argc, char **argv) {
    printf("payload %s\n", payload);
    printf("euid %u egid %u\n", (unsigned)geteuid(), (unsigned)getegid());
    status_lines();
    mode_t m = umask(0);
    printf("umask %03o\n", (unsigned)m);
    for (int r = 0; r < RLIM_NLIMITS; r++) {
        struct rlimit l;
        getrlimit(r, &l);
        printf("rlimit %d %llu %llu\n", r, (unsigned long long)l.rlim_cur, (unsigned long long)l.rlim_max);
    }
    printf("nice %d\n", getpriority(PRIO_PROCESS, 0));
    file("oom_score_adj", "/proc/self/oom_score_adj");
    cpu_set_t set;
    CPU_ZERO(&set);
    sched_getaffinity(0, sizeof set, &set);
    printf("cpus %d first %d\n", CPU_COUNT(&set), CPU_ISSET(0, &set) ? 0 : 1);
    printf("ioprio %ld\n", syscall(SYS_ioprio_get, 1, 0));
    printf("personality %x\n", (unsigned)personality(0xffffffff));
    printf("dumpable %d\n", prctl(PR_GET_DUMPABLE));
    file("cgroup", "/proc/self/cgroup");
    char ns[128] = {0};
    if (readlink("/proc/self/ns/mnt", ns, sizeof ns - 1) < 0) strcpy(ns, "?");
    printf("mntns %s\n", ns);
    for (int i = 1; i < argc; i++) printf("arg %s\n", argv[i]);
    return 0;
}
