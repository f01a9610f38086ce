#!/usr/bin/env python3
"""cpu-split.py PERF_DATA [-v]: the CPU samples of a `perf record` grouped by where they went
(signature checks, HTTP and JSON, storage, kernel, ...), as shares of all samples. -v lists
the largest symbols left in "other". Used for BENCHMARKS.md's CPU split."""
import subprocess, sys, re, collections
out = subprocess.run(['perf', 'report', '-i', sys.argv[1], '--no-children', '-g', 'none', '--sort', 'sym',
                      '--percent-limit', '0', '--stdio'], capture_output=True, text=True).stdout
cats = [
    ('signature checks (ed25519)', r'curve25519|ed25519|scalar|FieldElement|EdwardsPoint|sha512|verify'),
    ('Noise (ChaCha20-Poly1305)', r'chacha|poly1305|snow|x25519'),
    ('SHA-256 (txids, short ids, merkle, hashes)', r'sha2::|sha256'),
    ('storage (sled)', r'sled|crossbeam_epoch'),
    ('HTTP and JSON (hyper, axum, serde_json, hex, bech32)', r'serde_json|hex::|BytesToHexChars|hyper|axum|bech32|FromStr|format_escaped|from_utf8|String as core::iter|http::|httparse|fmt::|reqwest'),
    ('bincode encoding', r'bincode|encoding::'),
    ('memory: allocator and copies', r'mi_|malloc|free\b|memmove|memcpy|memset|drop_in_place|Clone>::clone|_mi_|Vec<T.*from_iter'),
    ('kernel: TCP and sockets', r'\[k\].*(tcp|skb|sock|inet|ip_|__dev|loopback|net_|copy_(to|from)_|_copy_|recv|send|epoll|poll)'),
    ('kernel: scheduling, futexes, syscalls', r'\[k\].*(sched|futex|switch|wake|spin|syscall|irq|entry|hrtimer|rcu)'),
    ('kernel: page faults and zeroing', r'\[k\].*(page|folio|fault|pmd|pte|mm_|vma|lru)'),
    ('kernel: other', r'\[k\]'),
    ('runtime (tokio, locks, channels, maps)', r'tokio|parking_lot|mpsc|semaphore|Mutex|hashbrown|BTree|__sched_yield|syscall'),
]
tot = collections.Counter(); other = collections.Counter(); total = 0.0
for line in out.splitlines():
    m = re.match(r'\s+([\d.]+)%\s+(.*)', line)
    if not m: continue
    pct, sym = float(m.group(1)), m.group(2)
    total += pct
    for name, rx in cats:
        if re.search(rx, sym, re.I):
            tot[name] += pct; break
    else:
        tot['other'] += pct; other[sym.strip()] += pct
for cat, pct in sorted(tot.items(), key=lambda kv: -kv[1]):
    print(f'  {100*pct/total:5.1f}%  {cat}')
if '-v' in sys.argv:
    for sym, pct in other.most_common(15): print(f'       {100*pct/total:5.2f}% {sym[:110]}')
