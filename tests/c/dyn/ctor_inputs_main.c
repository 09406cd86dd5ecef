/*
 * zygote integration test program linked against ctor_inputs.c: prints
 * what the library's constructor saw, one fact per line, prefixed so a test
 * can compare them one group at a time:
 *   "saved ..."   argc, argv and envp as the constructor saved them
 *   "env ..."     getenv("ZT_MODE") in the constructor
 *   "args ..."    whether argv[1] was "-v" in the constructor
 */
#include <stdio.h>

const char *ctor_mode(void);
int ctor_verbose(void);
int ctor_argc(void);
char **ctor_argv(void);
char **ctor_envp(void);
extern char **environ;

int main(int argc, char **argv)
{
    printf("saved argc=%d (main: %d)\n", ctor_argc(), argc);
    printf("saved argv is main's argv: %d\n", ctor_argv() == argv);
    for (int i = 0; i < ctor_argc() && i < 16; i++)
        printf("saved argv[%d]=[%s]\n", i, ctor_argv()[i]);
    printf("saved envp is the initial environ: %d\n", ctor_envp() == environ);
    for (char **e = ctor_envp(); *e; e++)
        printf("saved envp: [%s]\n", *e);
    printf("env ZT_MODE in the constructor: %s\n", ctor_mode());
    printf("args -v in the constructor: %d\n", ctor_verbose());
    return 0;
}
