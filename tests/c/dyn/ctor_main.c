/*
 * zygote integration test program linked against one of the ctor_*.c
 * libraries: prints its argv, getenv("X") and the library's report.
 * "exit=N" exits with N.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *lib_report(void);

int main(int argc, char **argv)
{
    int code = 0;
    for (int i = 0; i < argc; i++) {
        printf("argv[%d]=[%s]\n", i, argv[i]);
        if (strncmp(argv[i], "exit=", 5) == 0)
            code = atoi(argv[i] + 5);
    }
    const char *x = getenv("X");
    printf("X=%s\n", x ? x : "(null)");
    printf("%s\n", lib_report());
    fprintf(stderr, "ctor_main: done\n");
    return code;
}
