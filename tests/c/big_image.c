/*
 * A large static program for the memory-limit tests: DATA_MIB MiB of
 * writable data, every byte SEED (.data: zygote seals a copy; no page of it
 * is zero, so the sealed object is not sparse), and RODATA_MIB MiB of
 * constants (.rodata: mapped from the file), all in the file. SEED (not 0)
 * makes builds with the same sizes differ (another image). The arrays come
 * from the assembler's .fill, which is fast where a C initialiser of that
 * size takes gcc a minute. Prints a byte of each and exits 0.
 */
#include <stdio.h>

#define STR(x) #x
#define XSTR(x) STR(x)

__asm__(".section .data\n"
        ".globl big_data\n"
        ".type big_data, @object\n"
        "big_data:\n"
        ".fill " XSTR(DATA_MIB) " * 1048576, 1, " XSTR(SEED) "\n"
        ".section .rodata\n"
        ".globl big_rodata\n"
        ".type big_rodata, @object\n"
        "big_rodata:\n"
        ".fill " XSTR(RODATA_MIB) " * 1048576, 1, " XSTR(SEED) "\n"
        ".text\n");

extern char big_data[];
extern const char big_rodata[];

int main(void)
{
    printf("%d %d\n", big_data[DATA_MIB * 1048576 - 1], big_rodata[0]);
    return 0;
}
