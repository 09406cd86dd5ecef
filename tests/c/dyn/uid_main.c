/*
 * zygote integration test program linked against ctor_uid.c: prints the
 * effective uid main runs with.
 */
#include <stdio.h>
#include <unistd.h>

int ctor_uid_linked(void);

int main(void)
{
    printf("main euid=%d linked=%d\n", (int)geteuid(), ctor_uid_linked());
    return 0;
}
