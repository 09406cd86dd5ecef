/*
 * zygote integration test program: a shared library with an entry point
 * and a symbol relocation (built -shared -nostdlib, entered at zt_entry).
 * The kernel runs it as it is, leaving the relocation unapplied; zygote
 * refuses to image it, so it must run by plain exec. It writes one line and
 * exits 3 when the relocation was applied, 4 when not.
 */
int zt_x = 5;
__attribute__((visibility("hidden"))) int *zt_p = &zt_x;
static const char yes[] = "symbol relocation applied\n", no[] = "symbol relocation not applied\n";

void zt_entry(void) {
    const char *m = zt_p ? yes : no;
    long n = zt_p ? sizeof yes - 1 : sizeof no - 1, r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(1), "D"(1), "S"(m), "d"(n) : "rcx", "r11", "memory");
    __asm__ volatile("syscall" ::"a"(60), "D"(zt_p ? 3 : 4) : "rcx", "r11", "memory");
    for (;;) {
    }
}
