/*
 * zygote integration test library with a version: build it with
 * -DZT_VERSION=N to get a library whose functions say N.
 * Build: gcc -shared -fPIC -DZT_VERSION=1.
 */
#ifndef ZT_VERSION
#error "define ZT_VERSION"
#endif
#define STR2(x) #x
#define STR(x) STR2(x)

int libv_version(void) { return ZT_VERSION; }

const char *libv_name(void) { return "v" STR(ZT_VERSION); }
