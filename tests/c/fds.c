/*
 * zygote integration test program: lists its open file descriptors.
 * Prints the fd numbers from /proc/self/fd in ascending order, separated by
 * single spaces, excluding the directory fd used for the listing itself,
 * followed by a newline. With argv[1] == "write9" it then writes "via9\n"
 * to fd 9.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int cmp_int(const void *x, const void *y)
{
    int a = *(const int *)x, b = *(const int *)y;
    return (a > b) - (a < b);
}

int main(int argc, char **argv)
{
    DIR *dir = opendir("/proc/self/fd");
    if (!dir) {
        perror("opendir /proc/self/fd");
        return 2;
    }
    int self = dirfd(dir);
    int fds[4096];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL && n < 4096) {
        if (e->d_name[0] == '.')
            continue;
        int fd = atoi(e->d_name);
        if (fd != self)
            fds[n++] = fd;
    }
    closedir(dir);
    qsort(fds, n, sizeof fds[0], cmp_int);
    char out[8192];
    size_t len = 0;
    for (int i = 0; i < n; i++)
        len += snprintf(out + len, sizeof out - len, i ? " %d" : "%d", fds[i]);
    len += snprintf(out + len, sizeof out - len, "\n");
    /* write(2) directly: stdout may be missing or not what we think */
    if (write(1, out, len) != (ssize_t)len)
        return 3;
    if (argc > 1 && strcmp(argv[1], "write9") == 0) {
        if (write(9, "via9\n", 5) != 5)
            return 4;
    }
    return 0;
}
