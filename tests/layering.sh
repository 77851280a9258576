#!/usr/bin/env bash
# layering.sh SOURCE_DIR: the rooms' include rules hold, read from every #include "..." of
# every C, C++ and CUDA file (resolved as the compiler does: beside the file, then from the
# source root). A broken rule fails naming the file, its line and the header.
#   - core/base/ (the shared base library) includes nothing of the project outside itself;
#   - shaper/ includes nothing of core/ but core/base/, and nothing of harness/;
#   - core/ includes nothing of shaper/ or harness/;
#   - core/cp/, core/model/, core/train/ and harness/ include no backend (core/ops/cpu/,
#     core/ops/cuda/): they are written once, against core/ops/ops.h, and get a backend from
#     ops_make with its options;
#   - core/ops/ops.h declares no process-wide variables (a backend's options travel in its
#     instance, given when it is made);
#   - the K/V message size is computed in one place, cp_kv_message_bytes, which the trainer,
#     `wancp check` and the simulator call.
set -uo pipefail
cd "$1" || exit 2
python3 - <<'PY'
import os, re, sys

rules = [  # (files under, may not include under, except under)
    ('core/base/', ('core/', 'shaper/', 'harness/'), 'core/base/'),
    ('shaper/', ('core/', 'harness/'), 'core/base/'),
    ('core/', ('shaper/', 'harness/'), None),
    ('core/cp/', ('core/ops/cpu/', 'core/ops/cuda/'), None),
    ('core/model/', ('core/ops/cpu/', 'core/ops/cuda/'), None),
    ('core/train/', ('core/ops/cpu/', 'core/ops/cuda/'), None),
    ('harness/', ('core/ops/cpu/', 'core/ops/cuda/'), None),
]
include = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
failures = includes = 0
for top in ('core', 'shaper', 'harness'):
    for root, dirs, files in os.walk(top):
        for name in sorted(files):
            if not name.endswith(('.c', '.h', '.cu', '.cuh', '.cc', '.cpp')):
                continue
            path = os.path.join(root, name)
            with open(path, encoding='utf-8') as f:
                for number, line in enumerate(f, 1):
                    m = include.match(line)
                    if not m:
                        continue
                    includes += 1
                    beside = os.path.normpath(os.path.join(root, m.group(1)))
                    target = beside if os.path.exists(beside) else os.path.normpath(m.group(1))
                    for under, banned, allowed in rules:
                        if path.startswith(under) and target.startswith(banned) and \
                                not (allowed and target.startswith(allowed)):
                            print(f'FAIL: {path}:{number}: includes {target} ({under} may not include {" or ".join(banned)})')
                            failures += 1

with open('core/ops/ops.h', encoding='utf-8') as f:
    for number, line in enumerate(f, 1):
        if re.match(r'\s*extern\s+(?!"C")', line) and '(' not in line:
            print(f'FAIL: core/ops/ops.h:{number}: declares a process-wide variable: {line.strip()}')
            failures += 1

# The message size: the one definition, and its three callers.
callers = {'core/cp': 0, 'harness/report': 0, 'harness/sim': 0}
for top in callers:
    for root, dirs, files in os.walk(top):
        for name in files:
            if name.endswith('.c') and name != 'cp_message.c':
                with open(os.path.join(root, name), encoding='utf-8') as f:
                    callers[top] += f.read().count('cp_kv_message_bytes(')
for top, n in callers.items():
    if n == 0:
        print(f'FAIL: nothing under {top}/ sizes K/V messages with cp_kv_message_bytes')
        failures += 1
print(f'{includes} includes checked; {failures} broken rules')
sys.exit(1 if failures else 0)
PY
