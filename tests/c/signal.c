/*
 * zygote integration test program: dies by a signal chosen by argv[1].
 *   abort -> raise(SIGABRT)        (status: signaled 6)
 *   kill  -> kill(getpid(), SIGKILL) (status: signaled 9)
 *   segv  -> raise(SIGSEGV) with the default action (status: signaled 11)
 *   term  -> kill(getpid(), SIGTERM) (status: signaled 15)
 * Anything else: exit 3 (so a missing/mangled argv cannot look like a pass).
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2)
        return 3;
    printf("dying by %s\n", argv[1]);
    fflush(stdout);
    if (strcmp(argv[1], "abort") == 0)
        raise(SIGABRT);
    else if (strcmp(argv[1], "kill") == 0)
        kill(getpid(), SIGKILL);
    else if (strcmp(argv[1], "segv") == 0)
        raise(SIGSEGV);
    else if (strcmp(argv[1], "term") == 0)
        kill(getpid(), SIGTERM);
    else
        return 3;
    /* not reached if the signal was delivered */
    return 4;
}
