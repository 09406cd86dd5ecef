/*
 * zygote daemon test program: a filter. Reads stdin to EOF and writes each
 * line to stdout prefixed by "TAG:" (TAG = argv[1], default "-"), then
 * writes "TAG: LINES lines, BYTES bytes" to stderr and exits with the number
 * of lines (mod 256). A last line without a newline still counts and gets
 * one.
 */
#include <stdio.h>

int main(int argc, char **argv)
{
    const char *tag = argc > 1 ? argv[1] : "-";
    long lines = 0, bytes = 0;
    int at_start = 1;
    int c;
    while ((c = getchar()) != EOF) {
        bytes++;
        if (at_start) {
            printf("%s:", tag);
            at_start = 0;
        }
        putchar(c);
        if (c == '\n') {
            lines++;
            at_start = 1;
        }
    }
    if (!at_start) {
        putchar('\n');
        lines++;
    }
    fflush(stdout);
    fprintf(stderr, "%s: %ld lines, %ld bytes\n", tag, lines, bytes);
    return (int)(lines % 256);
}
