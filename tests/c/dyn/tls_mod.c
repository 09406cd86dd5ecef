/*
 * zygote integration test module, loaded with dlopen after the restore: its
 * thread-local variables use the general-dynamic TLS model (__tls_get_addr
 * and the thread's dtv, which the restored main thread carries over from
 * the snapshot). Build: gcc -shared -fPIC -ftls-model=global-dynamic.
 */
static __thread long counter = 100;
static __thread char buf[4096];

long tls_bump(long by)
{
    counter += by;
    buf[by % sizeof buf] = (char)by;
    return counter;
}

long tls_buf_sum(void)
{
    long s = 0;
    for (unsigned i = 0; i < sizeof buf; i++)
        s += buf[i];
    return s;
}
