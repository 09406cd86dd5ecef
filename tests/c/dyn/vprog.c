/*
 * zygote integration test program linked against libv.so (libv.c): prints
 * the library's version, waits for a line (or EOF) on stdin, prints the
 * version again and exits 0.
 */
#include <stdio.h>

int libv_version(void);
const char *libv_name(void);

int main(void)
{
    printf("version %s %d\n", libv_name(), libv_version());
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof line, stdin))
        line[0] = 0;
    printf("again %s %d\n", libv_name(), libv_version());
    return 0;
}
