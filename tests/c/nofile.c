/* Prints this process's RLIMIT_NOFILE (soft, hard). */
#include <stdio.h>
#include <sys/resource.h>

int main(void)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) != 0)
        return 1;
    printf("%llu %llu\n", (unsigned long long)r.rlim_cur, (unsigned long long)r.rlim_max);
    return 0;
}
