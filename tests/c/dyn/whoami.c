/*
 * zygote integration test program that says which build it is: compile it
 * twice with -DZT_NAME='"A"' and -DZT_NAME='"B"' to get two different
 * programs.
 */
#include <stdio.h>

#ifndef ZT_NAME
#error "define ZT_NAME as a string literal"
#endif

int main(void)
{
    printf("I am %s\n", ZT_NAME);
    return 0;
}
