/*
 * zygote daemon test program: echoes its command line.
 * Prints "argc=N" then one line "[i]=ARG" per argument (argv[0] excluded),
 * and exits 0. Built both with glibc and musl (two distinct binaries).
 */
#include <stdio.h>

int main(int argc, char **argv)
{
    printf("argc=%d\n", argc);
    for (int i = 1; i < argc; i++)
        printf("[%d]=%s\n", i, argv[i]);
    return 0;
}
