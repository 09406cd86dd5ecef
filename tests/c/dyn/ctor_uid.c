/*
 * zygote integration test library: its constructor appends the effective
 * uid it runs with to a log file (ZT_LOG_FILE, a string literal), so a test
 * can see with which privileges the constructor ran.
 * Build: gcc -shared -fPIC -DZT_LOG_FILE='"/path"'.
 */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#ifndef ZT_LOG_FILE
#error "define ZT_LOG_FILE as a string literal"
#endif

__attribute__((constructor)) static void log_uid(void)
{
    int fd = open(ZT_LOG_FILE, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd >= 0) {
        dprintf(fd, "ctor euid=%d\n", (int)geteuid());
        close(fd);
    }
}

int ctor_uid_linked(void) { return 1; }
