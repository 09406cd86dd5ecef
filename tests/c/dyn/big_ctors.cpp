// zygote integration test: the hand-written part of a large C++ shared
// library (the relocation tables are generated at test time, see
// tests/dynamic_big_cxx.rs). Its static constructors allocate: they run in
// the dynamic linker's _dl_init, before the program's entry point, so their
// results (on the brk heap and in mmap'd chunks) are part of the prototype
// snapshot and must come back intact in every process started from it.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

std::vector<std::string> zt_words;
std::map<std::string, int> zt_map;
uint64_t *zt_buf;            // new[] in a constructor: 1.6 MB, an mmap'd chunk
size_t zt_buf_len;
std::string zt_long;         // 100 kB: a large brk-heap chunk
std::unique_ptr<std::vector<int>> zt_vec;
int zt_init_order;           // which constructors ran, in order

namespace {

struct Init {
    Init()
    {
        zt_init_order = zt_init_order * 10 + 1;
        for (int i = 0; i < 3000; i++) {
            zt_words.push_back("word-" + std::to_string(i));
            zt_map[zt_words.back()] = i * i;
        }
        zt_buf_len = 200000;
        zt_buf = new uint64_t[zt_buf_len];
        for (size_t i = 0; i < zt_buf_len; i++)
            zt_buf[i] = i * 2654435761u;
        zt_long.assign(100000, 'q');
    }
} init_first;

struct InitSecond {
    InitSecond()
    {
        zt_init_order = zt_init_order * 10 + 2;
        zt_vec = std::make_unique<std::vector<int>>(50000, 7);
        (*zt_vec)[49999] = zt_init_order;
    }
} init_second;

} // namespace

__attribute__((constructor(200))) static void early_c_ctor()
{
    // Runs before the C++ initialisers above (priority 200 < default).
    zt_init_order = 9;
}
