/*
 * zygote integration test library: its constructor starts a thread that is
 * still alive at the program's entry point (it waits for lib_report), which
 * a snapshot cannot carry: zygote must refuse the image and run the program
 * by plain exec. Build: gcc -shared -fPIC -pthread.
 */
#include <pthread.h>
#include <stdio.h>

static pthread_t worker;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int go;
static long result;
static int started;

static void *work(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&mu);
    while (!go)
        pthread_cond_wait(&cv, &mu);
    long s = 0;
    for (int i = 1; i <= 100; i++)
        s += i;
    result = s;
    pthread_mutex_unlock(&mu);
    return NULL;
}

__attribute__((constructor)) static void start_thread(void)
{
    started = pthread_create(&worker, NULL, work, NULL) == 0;
}

const char *lib_report(void)
{
    static char buf[128];
    if (!started)
        return "constructor thread: not started";
    pthread_mutex_lock(&mu);
    go = 1;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
    pthread_join(worker, NULL);
    snprintf(buf, sizeof buf, "constructor thread computed %ld", result);
    return buf;
}
