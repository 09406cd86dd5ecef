/*
 * zygote integration test program: dlopen (after the restore) the module
 * named by argv[1] (tls_mod.c), use its thread-local variables from the main
 * thread and from new threads, dlclose it, open it again. Prints a
 * deterministic report; exits 99 on a failed check.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

typedef long (*bump_fn)(long);
typedef long (*sum_fn)(void);
static bump_fn bump;
static sum_fn sum;

static void *thread_main(void *arg)
{
    long id = (long)arg;
    long r = 0;
    for (long i = 1; i <= 10; i++)
        r = bump(id + i);
    return (void *)(r * 1000 + sum());
}

static int load(const char *path)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        printf("dlopen failed: %s\n", dlerror());
        return 0;
    }
    bump = (bump_fn)dlsym(h, "tls_bump");
    sum = (sum_fn)dlsym(h, "tls_buf_sum");
    if (!bump || !sum) {
        printf("dlsym failed\n");
        return 0;
    }
    printf("main: %ld %ld %ld\n", bump(1), bump(2), sum());
    pthread_t t[4];
    for (long i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, thread_main, (void *)(i * 100));
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        printf("thread %d: %ld\n", i, (long)r);
    }
    printf("main again: %ld\n", bump(0));
    return dlclose(h) == 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        printf("usage: dlopen_tls MODULE\n");
        return 2;
    }
    int ok = load(argv[1]);
    ok &= load(argv[1]);
    printf("ok=%d\n", ok);
    return ok ? 0 : 99;
}
