// zygote integration test: a C++ program linked against a large shared
// library (libbig.so: >= 200,000 relocations in generated tables, plus
// static constructors that allocate; see big_ctors.cpp and
// tests/dynamic_big_cxx.rs). It checks every table entry and every object
// the constructors built, then mutates and frees them and allocates much
// more (growing the heap past the snapshot's), and prints a deterministic
// report with checksums. "exit=N" exits with N; a failed check exits 99.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

extern std::vector<std::string> zt_words;
extern std::map<std::string, int> zt_map;
extern uint64_t *zt_buf;
extern size_t zt_buf_len;
extern std::string zt_long;
extern std::unique_ptr<std::vector<int>> zt_vec;
extern int zt_init_order;

extern "C" {
// Generated tables (tables.cpp), reached through an accessor so that this
// program reads the library's own relocated pages (naming the arrays here
// would make the linker copy them into the executable with COPY relocs).
const void *zt_table(int which);
extern const unsigned long zt_obj_count;
extern const unsigned long zt_fn_count;
extern const unsigned long zt_str_count;
extern const unsigned long zt_export_count;
extern const unsigned long zt_fn_kinds;
int *zt_objs_base(void);
int zt_call_exported(unsigned long k, int x);
int zt_fn_expected(unsigned long k, int x);
}

static int failures;
#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            if (failures++ < 20) {                                             \
                printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);         \
                printf(__VA_ARGS__);                                           \
                printf("\n");                                                  \
            }                                                                  \
        }                                                                      \
    } while (0)

static uint64_t mix(uint64_t h, uint64_t v) { return (h ^ v) * 1099511628211ull; }

int main(int argc, char **argv)
{
    int exit_code = 0;
    printf("argc=%d\n", argc);
    for (int i = 0; i < argc; i++) {
        printf("argv[%d]=[%s]\n", i, argv[i]);
        if (strncmp(argv[i], "exit=", 5) == 0)
            exit_code = atoi(argv[i] + 5);
    }
    const char *x = getenv("X");
    printf("X=%s\n", x ? x : "(null)");

    // Relocated tables.
    int *const *zt_obj_table = static_cast<int *const *>(zt_table(0));
    auto zt_fn_table = reinterpret_cast<int (*const *)(int)>(zt_table(1));
    const char *const *zt_str_table = static_cast<const char *const *>(zt_table(2));
    auto zt_export_table = reinterpret_cast<int (*const *)(int)>(zt_table(3));
    int *base = zt_objs_base();
    uint64_t h = 14695981039346656037ull;
    for (unsigned long i = 0; i < zt_obj_count; i++) {
        long idx = zt_obj_table[i] - base;
        CHECK(idx == (long)((i * 7919) % 1024), "obj_table[%lu] -> index %ld", i, idx);
        h = mix(h, (uint64_t)idx);
    }
    printf("objects: %lu pointers, checksum %016llx\n", zt_obj_count, (unsigned long long)h);
    h = 14695981039346656037ull;
    for (unsigned long i = 0; i < zt_fn_count; i++) {
        int got = zt_fn_table[i]((int)i);
        CHECK(got == zt_fn_expected(i % zt_fn_kinds, (int)i), "fn_table[%lu](%lu) = %d", i, i, got);
        h = mix(h, (uint64_t)(unsigned)got);
    }
    printf("functions: %lu pointers, checksum %016llx\n", zt_fn_count, (unsigned long long)h);
    h = 14695981039346656037ull;
    char want[32];
    for (unsigned long i = 0; i < zt_str_count; i++) {
        snprintf(want, sizeof want, "str-%lu", i);
        CHECK(strcmp(zt_str_table[i], want) == 0, "str_table[%lu] = %s", i, zt_str_table[i]);
        h = mix(h, strlen(zt_str_table[i]));
    }
    printf("strings: %lu pointers, checksum %016llx\n", zt_str_count, (unsigned long long)h);
    h = 14695981039346656037ull;
    for (unsigned long i = 0; i < zt_export_count; i++) {
        int got = zt_export_table[i]((int)i);
        CHECK(got == zt_call_exported(i % zt_fn_kinds, (int)i), "export_table[%lu] = %d", i, got);
        h = mix(h, (uint64_t)(unsigned)got);
    }
    printf("exported: %lu pointers, checksum %016llx\n", zt_export_count, (unsigned long long)h);

    // What the constructors built.
    printf("constructor order: %d\n", zt_init_order);
    CHECK(zt_words.size() == 3000, "words %zu", zt_words.size());
    CHECK(zt_map.size() == 3000, "map %zu", zt_map.size());
    h = 14695981039346656037ull;
    for (size_t i = 0; i < zt_words.size(); i++) {
        std::string w = "word-" + std::to_string(i);
        CHECK(zt_words[i] == w, "word %zu = %s", i, zt_words[i].c_str());
        auto it = zt_map.find(w);
        CHECK(it != zt_map.end() && it->second == (int)(i * i), "map[%s]", w.c_str());
        for (char c : zt_words[i])
            h = mix(h, (uint64_t)c);
    }
    for (size_t i = 0; i < zt_buf_len; i++) {
        CHECK(zt_buf[i] == i * 2654435761u, "buf[%zu]", i);
        h = mix(h, zt_buf[i]);
    }
    CHECK(zt_long.size() == 100000 && zt_long.find_first_not_of('q') == std::string::npos, "long string");
    CHECK(zt_vec && zt_vec->size() == 50000 && (*zt_vec)[0] == 7 && (*zt_vec)[49999] == zt_init_order, "vec");
    printf("constructed objects: checksum %016llx\n", (unsigned long long)h);

    // Mutate and free what the constructors allocated, then allocate far more.
    for (int i = 0; i < 100000; i++)
        zt_words.push_back("more-" + std::to_string(i)); // reallocates: frees the snapshot's array
    for (int i = 0; i < 3000; i += 2)
        zt_map.erase("word-" + std::to_string(i));
    delete[] zt_buf;
    zt_buf = nullptr;
    zt_vec.reset();
    zt_long += std::string(1 << 20, 'r');
    std::vector<std::unique_ptr<std::string>> lots;
    for (int i = 0; i < 200000; i++)
        lots.push_back(std::make_unique<std::string>(100 + i % 50, (char)('a' + i % 26)));
    h = 14695981039346656037ull;
    for (auto &s : lots)
        h = mix(h, s->size() * 31 + (uint64_t)(*s)[0]);
    for (auto &w : zt_words)
        h = mix(h, w.size());
    for (auto &kv : zt_map)
        h = mix(h, (uint64_t)kv.second);
    printf("after mutation: words %zu, map %zu, long %zu, lots %zu, checksum %016llx\n", zt_words.size(),
           zt_map.size(), zt_long.size(), lots.size(), (unsigned long long)h);

    fprintf(stderr, "big_main: done\n");
    printf("failures=%d\n", failures);
    return failures ? 99 : exit_code;
}
