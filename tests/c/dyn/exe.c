/*
 * zygote integration test: print what /proc/self/exe names, plus argv and
 * getenv("X") so a test can tell the program otherwise runs correctly.
 *
 * With "wait" as the first argument it then prints "ready", waits for a
 * line (or EOF) on stdin, prints /proc/self/exe again and exits 0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void print_exe(void)
{
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n < 0) {
        perror("readlink /proc/self/exe");
        exit(1);
    }
    buf[n] = 0;
    printf("exe=[%s]\n", buf);
}

int main(int argc, char **argv)
{
    print_exe();
    for (int i = 1; i < argc; i++)
        printf("arg[%d]=[%s]\n", i, argv[i]);
    const char *x = getenv("X");
    printf("X=%s\n", x ? x : "(null)");
    if (argc > 1 && strcmp(argv[1], "wait") == 0) {
        printf("ready\n");
        fflush(stdout);
        char line[256];
        if (!fgets(line, sizeof line, stdin))
            line[0] = 0;
        print_exe();
    }
    return 0;
}
