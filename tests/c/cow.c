/*
 * zygote integration test program: copy-on-write isolation
 * (in the style of Fuchsia's LdRemoteTests.Zygote).
 *
 * It has a relocated pointer table (RELATIVE relocs in a static-PIE, in
 * writable .data.rel), initialised data, and a bss counter. It first checks
 * that all three hold their pristine initial values, then mutates all three.
 * If any earlier process's writes leaked into this one (e.g. the sealed
 * image were mapped MAP_SHARED or modified), the checks fail.
 *
 * Exit status: 17 if everything was pristine; otherwise a status that says
 * which part was wrong (1..15), and a message on stderr.
 */
#include <stdio.h>

static int a = 1, b = 2, c = 3, d = 4;
/* volatile: the compiler must really load and store these */
static int *volatile ptrs[] = {&a, &b, &c, &d};
static volatile int data[1024] = {10, 20, 30, 40}; /* spans a page: .data */
static volatile int counter;                      /* .bss */
static volatile int big_bss[4096];                /* several bss pages */

int main(void)
{
    int bad = 0;
    if (ptrs[0] != &a || ptrs[1] != &b || ptrs[2] != &c || ptrs[3] != &d) {
        fprintf(stderr, "cow: relocated pointer table not pristine\n");
        bad |= 1;
    }
    int sum = *ptrs[0] + *ptrs[1] + *ptrs[2] + *ptrs[3];
    if (sum != 10) {
        fprintf(stderr, "cow: pointed-to values not pristine: sum=%d\n", sum);
        bad |= 2;
    }
    long dsum = 0;
    for (int i = 0; i < 1024; i++)
        dsum += data[i];
    if (dsum != 100) {
        fprintf(stderr, "cow: initialised data not pristine: sum=%ld\n", dsum);
        bad |= 4;
    }
    long bsum = counter;
    for (int i = 0; i < 4096; i++)
        bsum += big_bss[i];
    if (bsum != 0) {
        fprintf(stderr, "cow: bss not zero: sum=%ld\n", bsum);
        bad |= 8;
    }

    /* Mutate everything: the relocated table, the data it points to,
     * initialised data and bss. */
    ptrs[0] = &d;
    ptrs[1] = &c;
    ptrs[2] = 0;
    ptrs[3] = (int *)0x1234;
    a = 100, b = 200, c = 300, d = 400;
    for (int i = 0; i < 1024; i++)
        data[i] = 1000 + i;
    counter++;
    for (int i = 0; i < 4096; i++)
        big_bss[i] = i + 1;
    if (counter != 1)
        bad |= 8;

    return bad ? bad : 17;
}
