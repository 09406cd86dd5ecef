/*
 * zygote daemon test program: exits with the code given as argv[1]
 * (after printing "exit CODE" on stdout and "bye CODE" on stderr).
 * Without an argument it exits 99 (so a lost argv cannot look like a pass).
 */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc < 2)
        return 99;
    int code = atoi(argv[1]);
    printf("exit %d\n", code);
    fprintf(stderr, "bye %d\n", code);
    return code;
}
