/*
 * zygote daemon test program: a process that lives for a while.
 *   sleep MS CODE  prints "started PID", sleeps MS milliseconds, prints
 *                  "done" and exits CODE.
 *   term           installs a SIGTERM handler, prints "ready PID" and waits;
 *                  on SIGTERM prints "got SIGTERM" and exits 42.
 * Output is flushed line by line (stdout is usually a pipe). Anything else
 * exits 3.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void on_term(int sig)
{
    static const char msg[] = "got SIGTERM\n";
    (void)sig;
    (void)!write(1, msg, sizeof msg - 1);
    _exit(42);
}

int main(int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "sleep") == 0) {
        long ms = atol(argv[2]);
        int code = atoi(argv[3]);
        printf("started %d\n", (int)getpid());
        fflush(stdout);
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0) {
        }
        printf("done\n");
        fflush(stdout);
        return code;
    }
    if (argc >= 2 && strcmp(argv[1], "term") == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_term;
        sigaction(SIGTERM, &sa, NULL);
        printf("ready %d\n", (int)getpid());
        fflush(stdout);
        for (;;)
            pause();
    }
    return 3;
}
