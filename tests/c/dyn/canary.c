/*
 * zygote integration test: print the stack protector canary glibc keeps in
 * the thread block (%fs:0x28 on x86_64), so a test can check that processes
 * started from one image do not share it.
 */
#include <stdio.h>

int main(void)
{
    unsigned long canary;
    __asm__ volatile("mov %%fs:0x28, %0" : "=r"(canary));
    printf("canary=%016lx\n", canary);
    return 0;
}
