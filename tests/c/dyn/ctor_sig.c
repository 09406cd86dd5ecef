/*
 * zygote integration test library: its constructor installs a signal
 * handler (refused by zygote: the program runs by plain exec).
 * Build: gcc -shared -fPIC.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

static volatile sig_atomic_t caught;

static void on_usr1(int sig) { caught = sig; }

__attribute__((constructor)) static void install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
}

const char *lib_report(void)
{
    raise(SIGUSR1);
    return caught == SIGUSR1 ? "constructor handler caught SIGUSR1" : "constructor handler: not called";
}
