/* The metrics tests' program: dirties exactly K known pages of its .data.
 *
 * usage: metrics_dirty K   write one byte in each of the first K pages of
 *                          `pages`, print "ready", pause until killed
 *        metrics_dirty x   exit 0 at once
 *
 * `pages` is 64 KiB aligned, the kernel's fault-around window, so a read
 * fault elsewhere in .data never maps one of its pages; and every page has a
 * nonzero byte, so all of them are in the image's sealed object.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define PAGES 64
#define PAGE 4096

char pages[PAGES][PAGE] __attribute__((aligned(65536))) = { [0 ... PAGES - 1] = { 1 } };

int main(int argc, char **argv)
{
    if (argc > 1 && argv[1][0] == 'x')
        return 0;
    int k = argc > 1 ? atoi(argv[1]) : 0;
    if (k < 0 || k > PAGES) {
        fprintf(stderr, "K must be 0..%d\n", PAGES);
        return 2;
    }
    volatile char *p = &pages[0][0];
    for (int i = 0; i < k; i++)
        p[i * PAGE + 7] = 2;
    printf("ready\n");
    fflush(stdout);
    for (;;)
        pause();
}
