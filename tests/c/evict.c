/*
 * zygote integration test program: a long-lived process that keeps
 * verifying its relocated table and initialised data.
 *
 * Prints "ready" once its SIGTERM handler is installed and the first check
 * passed, then re-checks every 5 ms. On SIGTERM it does a final check and
 * exits 0. If a check ever fails it prints "corrupt ..." and exits 1.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define N 4096
static int targets[N];
static int *table[N] = {
#define T4(i) &targets[i], &targets[i + 1], &targets[i + 2], &targets[i + 3]
#define T16(i) T4(i), T4(i + 4), T4(i + 8), T4(i + 12)
#define T64(i) T16(i), T16(i + 16), T16(i + 32), T16(i + 48)
#define T256(i) T64(i), T64(i + 64), T64(i + 128), T64(i + 192)
#define T1024(i) T256(i), T256(i + 256), T256(i + 512), T256(i + 768)
    T1024(0), T1024(1024), T1024(2048), T1024(3072)};
static const char *const names[] = {"one", "two", "three"};
static long data[N] = {1, 2, 3, 4, 5, 6, 7, 8};

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

static int check(void)
{
    for (int i = 0; i < N; i++) {
        if (table[i] != &targets[i]) {
            printf("corrupt table[%d]\n", i);
            return 0;
        }
    }
    long s = 0;
    for (int i = 0; i < N; i++)
        s += data[i];
    if (s != 36 || strcmp(names[2], "three") != 0) {
        printf("corrupt data sum=%ld\n", s);
        return 0;
    }
    return 1;
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    if (!check())
        return 1;
    printf("ready\n");
    fflush(stdout);
    struct timespec ts = {0, 5 * 1000 * 1000};
    while (!stop) {
        if (!check()) {
            fflush(stdout);
            return 1;
        }
        nanosleep(&ts, NULL);
    }
    if (!check()) {
        fflush(stdout);
        return 1;
    }
    printf("done\n");
    return 0;
}
