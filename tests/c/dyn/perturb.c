/*
 * zygote integration test program: shows whether malloc's perturb byte is
 * set (glibc tunable glibc.malloc.perturb, also settable with the legacy
 * MALLOC_PERTURB_ variable): with it, fresh malloc memory is filled with
 * perturb ^ 0xff instead of the zeros of a new heap.
 */
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    unsigned char *p = malloc(64);
    printf("fresh malloc byte: %#x\n", p[0]);
    free(p);
    return 0;
}
