/*
 * zygote integration test library: its constructor looks at what glibc
 * passes ELF constructors (argc, argv, envp) and at the environment. In a
 * direct run it sees the process's own; a process started from an image
 * must see the same (the constructor ran once, in the prototype).
 * Build: gcc -shared -fPIC.
 */
#include <stdlib.h>
#include <string.h>

static const char *mode;
static int verbose;
static int saved_argc;
static char **saved_argv;
static char **saved_envp;

__attribute__((constructor)) static void init(int argc, char **argv, char **envp)
{
    mode = getenv("ZT_MODE");
    verbose = argc > 1 && strcmp(argv[1], "-v") == 0;
    saved_argc = argc;
    saved_argv = argv;
    saved_envp = envp;
}

const char *ctor_mode(void) { return mode ? mode : "(null)"; }
int ctor_verbose(void) { return verbose; }
int ctor_argc(void) { return saved_argc; }
char **ctor_argv(void) { return saved_argv; }
char **ctor_envp(void) { return saved_envp; }
