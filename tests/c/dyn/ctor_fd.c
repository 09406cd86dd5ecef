/*
 * zygote integration test library: its constructor opens a file and keeps
 * the descriptor (read later by lib_report). An open fd cannot be carried by
 * a snapshot: zygote must refuse the image and run the program by plain
 * exec. Build: gcc -shared -fPIC -DZT_DATA_FILE='"/path"'.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#ifndef ZT_DATA_FILE
#error "define ZT_DATA_FILE as a string literal"
#endif

static int fd = -1;

__attribute__((constructor)) static void open_file(void)
{
    fd = open(ZT_DATA_FILE, O_RDONLY);
}

const char *lib_report(void)
{
    static char buf[256];
    char data[128];
    if (fd < 0)
        return "constructor fd: open failed";
    ssize_t n = pread(fd, data, sizeof data - 1, 0);
    if (n < 0)
        return "constructor fd: read failed";
    data[n] = 0;
    data[strcspn(data, "\n")] = 0;
    snprintf(buf, sizeof buf, "constructor fd %d read [%s]", fd, data);
    return buf;
}
