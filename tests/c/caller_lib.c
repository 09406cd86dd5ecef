/*
 * zygote integration test program: a dynamically linked program and the
 * shared library it loads (built from this one file: with -DZT_LIB="TEXT"
 * the library, whose function returns TEXT; without it the program, which
 * prints what the library it loaded says). A test puts another build of the
 * library over the first in a private mount namespace and compares which
 * one a program started through the thin client loads with a direct exec.
 */
#include <stdio.h>

#ifdef ZT_LIB
const char *zt_caller_lib(void) { return ZT_LIB; }
#else
const char *zt_caller_lib(void);

int main(void) {
    printf("library %s\n", zt_caller_lib());
    return 0;
}
#endif
