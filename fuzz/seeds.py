#!/usr/bin/env python3
"""Write the committed seed corpus, fuzz/corpus/<target>/, from scratch: small
hand-built inputs, each a few hundred bytes, that reach deep into every target
(valid ELF programs of each kind, frames and JSON of every message, plans with
every record and op kind) plus a few broken ones. Rerun after a format change:
    python3 fuzz/seeds.py
The layouts follow crates/core/src/elf (ELF64), crates/protocol/src/frame.rs
and message.rs, and crates/plan/src/records.rs and ops.rs."""
import json, os, shutil, struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus')
PAGE = 0x1000

# --- ELF ------------------------------------------------------------------
ET_EXEC, ET_DYN, EM_X86_64, EM_AARCH64 = 2, 3, 62, 183
PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_PHDR, PT_TLS = 1, 2, 3, 6, 7
PT_GNU_STACK, PT_GNU_RELRO = 0x6474E551, 0x6474E552
PF_X, PF_W, PF_R = 1, 2, 4
DT_NULL, DT_RELA, DT_RELASZ, DT_REL, DT_RELSZ = 0, 7, 8, 17, 18
DT_RELRSZ, DT_RELR, DT_FLAGS_1, DT_RELACOUNT, DT_RELCOUNT = 35, 36, 0x6FFFFFFB, 0x6FFFFFF9, 0x6FFFFFFA
DF_1_PIE = 0x08000000
R_X86_64_RELATIVE, R_X86_64_IRELATIVE = 8, 37
EHDR, PHDR = 64, 56


def ehdr(etype, entry, phnum, machine=EM_X86_64):
    ident = b'\x7fELF' + bytes([2, 1, 1, 0]) + bytes(8)
    return ident + struct.pack('<HHIQQQIHHHHHH', etype, machine, 1, entry, EHDR, 0, 0, EHDR, PHDR, phnum, 0, 0, 0)


def phdr(ptype, flags, offset, vaddr, filesz, memsz, align):
    return struct.pack('<IIQQQQQQ', ptype, flags, offset, vaddr, vaddr, filesz, memsz, align)


def elf(etype, base, phdrs_after_text, data_len, data_bss, dyn=None, extra=(), machine=EM_X86_64):
    """Text (headers + a `ud2; jmp .`) in one page at `base`, data at the next
    page with the same page offset as in the file (so the file stays small).
    `extra(text_end, data_vaddr, data_off)` returns more program headers."""
    n = 2 + len(extra) + (1 if dyn is not None else 0)
    code_off = EHDR + PHDR * n
    code = b'\x0f\x0b\xeb\xfe'
    data_off = (code_off + len(code) + 7) & ~7
    data_vaddr = base + PAGE + data_off
    text = (PT_LOAD, PF_R | PF_X, 0, base, data_off, data_off, PAGE)
    data = dyn(data_vaddr) if dyn is not None else bytes(data_len)
    rw = (PT_LOAD, PF_R | PF_W, data_off, data_vaddr, len(data), len(data) + data_bss, PAGE)
    phs = [text, rw] + [e(data_off, data_vaddr) for e in extra]
    if dyn is not None:
        # .dynamic is the tail of the data segment (see pie_data).
        phs.append((PT_DYNAMIC, PF_R | PF_W, data_off + len(data) - DYN_LEN, data_vaddr + len(data) - DYN_LEN, DYN_LEN, DYN_LEN, 8))
    out = ehdr(etype, base + code_off, len(phs), machine) + b''.join(phdr(*p) for p in phs) + code
    return out + bytes(data_off - len(out)) + data


DYN_TAGS = 9
DYN_LEN = 16 * DYN_TAGS


def pie_data(v):
    """A static PIE's data: 8 words to relocate, RELA (2 relative, 1
    IRELATIVE), REL (1), RELR (an address and a bitmap), then .dynamic."""
    words = struct.pack('<8Q', *range(0x100, 0x108))
    rela_at, rel_at = v + 64, v + 64 + 72
    rela = b''.join(struct.pack('<QQQ', v + 8 * i, t, 0x10 * i) for i, t in
                    [(0, R_X86_64_RELATIVE), (1, R_X86_64_RELATIVE), (2, R_X86_64_IRELATIVE)])
    rel = struct.pack('<QQ', v + 24, R_X86_64_RELATIVE)
    relr_at = rel_at + len(rel)
    relr = struct.pack('<QQ', v + 32, 0b111)
    dyn = [(DT_FLAGS_1, DF_1_PIE), (DT_RELA, rela_at), (DT_RELASZ, len(rela)), (DT_RELACOUNT, 2),
           (DT_REL, rel_at), (DT_RELSZ, len(rel)), (DT_RELR, relr_at), (DT_RELRSZ, len(relr)), (DT_NULL, 0)]
    assert len(dyn) == DYN_TAGS
    return words + rela + rel + relr + b''.join(struct.pack('<qQ', t, x) for t, x in dyn)


def elf_seeds():
    static = elf(ET_EXEC, 0x400000, None, 64, 0x2000)
    relro = lambda off, v: (PT_GNU_RELRO, PF_R, off, v, 64, 64, 1)
    tls = lambda off, v: (PT_TLS, PF_R, off, v, 16, 64, 8)
    stack = lambda off, v: (PT_GNU_STACK, PF_R | PF_W, 0, 0, 0, 0, 16)
    phdr_self = lambda off, v: (PT_PHDR, PF_R, EHDR, 0x400000 + EHDR, 0, 0, 8)
    yield 'static', static
    yield 'static-tls-relro', elf(ET_EXEC, 0x400000, None, 128, 0x100, extra=[relro, tls, stack, phdr_self])
    yield 'static-pie', elf(ET_DYN, 0, None, 0, 0x100, dyn=pie_data, extra=[relro, stack])
    yield 'static-pie-tls', elf(ET_DYN, 0x10000, None, 0, 0, dyn=pie_data, extra=[tls])
    # Linked above the bias window: its load bias is "negative" (once a panic).
    yield 'static-pie-high', elf(ET_DYN, 0x600000000000, None, 0, 0x100, dyn=pie_data)
    interp = lambda off, v: (PT_INTERP, PF_R, off, v, 28, 28, 1)
    yield 'dynamic', elf(ET_EXEC, 0x400000, None, 32, 0, extra=[interp])[:-32] + b'/lib64/ld-linux-x86-64.so.2\0\0\0\0\0'
    yield 'aarch64', elf(ET_EXEC, 0x400000, None, 64, 0, machine=EM_AARCH64)
    yield 'truncated-header', static[:40]
    yield 'truncated-phdrs', static[:EHDR + PHDR + 10]


# --- frames and messages --------------------------------------------------
def frame(body, fds=0):
    return struct.pack('<4sIII', b'ZYGF', len(body), fds, 0) + body


def js(v):
    return json.dumps(v, separators=(',', ':')).encode()


HELLO = js({'version': 1})
REQUESTS = {
    'spawn': js({'method': 'spawn', 'argv': [list(b'/bin/true'), [0xff, 0x41]], 'environ': [list(b'A=1')],
                 'name': list(b'true'), 'cwd': list(b'/'), 'fds': [0, 1, 2], 'path': list(b'/bin/true'),
                 'detach': False}),
    'preload': js({'method': 'preload', 'name': 'true'}),
    'evict': js({'method': 'evict', 'key': 'ab' * 32}),
    'stats': js({'method': 'stats'}),
    'wait': js({'method': 'wait', 'pid': 42}),
}
CACHE = {k: 0 for k in ['entries', 'bytes', 'max_entries', 'max_bytes', 'hits', 'misses', 'evictions', 'builds', 'build_nanos']}
RESPONSES = {
    'welcome': js({'version': 1, 'limits': {'max_message_bytes': 16 << 20, 'max_fds': 64, 'max_args_bytes': 2 << 20}}),
    'spawned': js({'reply': 'spawned', 'pid': 42, 'key': 'ab' * 32}),
    'preloaded': js({'reply': 'preloaded', 'key': 'ab' * 32, 'sealed_bytes': 8192}),
    'evicted': js({'reply': 'evicted', 'count': 1}),
    'exited': js({'reply': 'exited', 'pid': 42, 'code': None, 'signal': 9}),
    'error': js({'reply': 'error', 'code': 'BAD_EXECUTABLE', 'message': 'not an ELF file'}),
    'stats': js({'reply': 'stats', 'cache': CACHE, 'spawns': 1, 'spawn_errors': 0, 'live_children': 0,
                 'connections': 1, 'open_connections': 1,
                 'images': [{'key': 'ab' * 32, 'path': '/bin/true', 'sealed_bytes': 4096, 'regions': 3}],
                 'saved_bytes': 0}),
}


def frame_seeds():
    for name, body in REQUESTS.items():
        # First byte: the size of the pieces the input arrives in.
        yield f'hello-{name}', bytes([7]) + frame(HELLO) + frame(body)
    yield 'all-requests', bytes([255]) + frame(HELLO) + b''.join(frame(b) for b in REQUESTS.values())
    yield 'fds-announced', bytes([16]) + frame(HELLO) + frame(REQUESTS['preload'], fds=1)
    yield 'truncated-body', bytes([3]) + frame(HELLO)[:-2]
    yield 'bad-magic', bytes([1]) + b'ZYGX' + frame(HELLO)[4:]


def json_seeds():
    yield 'hello', HELLO
    for name, body in REQUESTS.items():
        yield f'request-{name}', body
    for name, body in RESPONSES.items():
        yield f'response-{name}', body


# --- plans ----------------------------------------------------------------
PLAN_MAGIC, PLAN_VERSION, HEADER_SIZE, REGION, FDMOVE, OP = b'ZYGPLAN\0', 3, 168, 40, 8, 40


def plan(regions, fds, ops, args=b'', argc=0, envc=0, name=b'prog', exe_fd=-1, cwd_fd=-1, flags=0):
    region_off = HEADER_SIZE
    fd_off = region_off + REGION * len(regions)
    op_off = fd_off + FDMOVE * len(fds)
    args_off = op_off + OP * len(ops)
    total = args_off + len(args)
    h = PLAN_MAGIC + struct.pack('<II', PLAN_VERSION, HEADER_SIZE)
    entry = 0x5a0000001000
    h += struct.pack('<9Q', total, entry, 0, 0x5a0000000040, 9, 56, entry, 0, 0)
    h += struct.pack('<iI16s', 7, len(name), name)
    h += struct.pack('<6I', region_off, len(regions), fd_off, len(fds), op_off, len(ops))
    h += struct.pack('<iIIIIiII', exe_fd, args_off if args else 0, len(args), argc, envc, cwd_fd, flags, 0)
    assert len(h) == HEADER_SIZE
    body = b''.join(struct.pack('<QQQiIII', v, n, o, fd, prot, src, 0) for v, n, o, fd, prot, src in regions)
    body += b''.join(struct.pack('<ii', a, b) for a, b in fds)
    body += b''.join(struct.pack('<IIQQQQ', *op) for op in ops)
    return h + body + args


def plan_seeds():
    base = 0x5a0000000000
    regions = [(base, 0x2000, 0, 4, 5, 1), (base + 0x2000, 0x1000, 0, 5, 3, 1), (base + 0x3000, 0x3000, 0, -1, 3, 2)]
    fds = [(20, 0), (21, 1), (22, 2), (23, 9)]
    yield 'static', plan(regions, fds, [])
    ops = [(1, 1, (-0x4000) & (2**64 - 1), 0x2000, 0x7f0000000000, 0), (1, 0, 0x2000, 0x1000, 0x7f0000002000, 0)]
    ops += [(2, k, base + 0x2000 + 8 * k, 15 if k == 7 else 0, 0, 0) for k in range(1, 9)]
    ops += [(3, 0, base + 0x2000, 0x1000, 1, 0), (4, 0, base + 0x2800, 0, 0, 0), (5, 0, base + 0x2810, 0, 0, 0),
            (6, 0, base + 0x2820, 24, 0, 0), (7, 0, base + 0x2900, 32, 0, 0x53053053), (8, 0, base + 0x2828, 0, 0, 0),
            (9, 0, base, base + 0x2000, base + 0x2000, base + 0x3000), (10, 0, base + 0x6000, base + 0x6000, 0, 0)]
    yield 'prototype-all-ops', plan(regions, fds, ops, exe_fd=30)
    yield 'prestart-warm-up', plan(regions, [], [o for o in ops if o[0] in (1, 4, 5, 6, 7)], flags=1, exe_fd=30)
    args = b'/bin/true\0-x\0HOME=/\0PATH=/bin\0'
    yield 'prestart-spawn', plan([], fds[:3], [o for o in ops if o[0] in (2, 3, 8, 9, 10)], args, 2, 2, cwd_fd=31)
    yield 'truncated', plan(regions, fds, [])[:200]
    yield 'empty', plan([], [], [], name=b'')


def image_seeds():
    """Image requests and replies (crates/plan/src/image.rs)."""
    def request(path, env, flags=1, personality=0):
        blob = b''.join(e + b'\0' for e in env)
        return b'ZYGIMGQ\0' + struct.pack('<6I', 1, flags, personality, len(path), len(blob), len(env)) + path + blob

    def reply(status, fds, message, plan_bytes):
        head = b'ZYGIMGR\0' + struct.pack('<4I', status, fds, len(message), len(plan_bytes)) + message
        return head + bytes(-len(head) % 8) + plan_bytes

    yield 'request', request(b'/usr/bin/true', [b'LD_BIND_NOW=1', b'MALLOC_ARENA_MAX=2'])
    yield 'request-no-env', request(b'/bin/sh', [], flags=0, personality=0x0040000)
    base = 0x5a0000000000
    regions = [(base, 0x2000, 0, 4, 5, 1), (base + 0x2000, 0x1000, 0, 5, 3, 1), (base + 0x3000, 0x3000, 0, -1, 3, 2)]
    yield 'reply-image', reply(0, 1, b'', plan(regions, [], [], exe_fd=4))
    yield 'reply-miss', reply(2, 0, b'not cached yet', b'')
    yield 'reply-bad-status', reply(9, 0, b'', b'')


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    total = 0
    for target, seeds in [('elf_decode', elf_seeds), ('elf_prepare', elf_seeds), ('frame', frame_seeds),
                          ('message_json', json_seeds), ('plan', plan_seeds), ('image_wire', image_seeds)]:
        os.makedirs(os.path.join(OUT, target))
        for name, data in seeds():
            assert len(data) < 16 << 10, (target, name, len(data))
            with open(os.path.join(OUT, target, name), 'wb') as f:
                f.write(data)
            total += len(data)
    print(f'seeds: {total} bytes in {OUT}')
    assert total < 300 << 10


if __name__ == '__main__':
    main()
