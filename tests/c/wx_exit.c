/* A program whose only PT_LOAD is readable, writable and executable (linked
 * with -nostdlib -static and wx_exit.ld): no libc, raw system calls. It
 * writes "wx" and exits 42. zygote copies a writable segment into a sealed
 * object, so nothing executable is mapped from the file itself: on a noexec
 * mount only zygote's own mount check refuses it, as execve does. */
void _start(void) {
    static const char msg[] = "wx\n";
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(1L), "D"(1L), "S"(msg), "d"(3L) : "rcx", "r11", "memory");
    __asm__ volatile("syscall" : : "a"(60L), "D"(42L) : "rcx", "r11", "memory");
    __builtin_unreachable();
}
