#!/usr/bin/env python3
"""check-layers.py: the include rules of runtime/ (see runtime/README.md).

Each folder of runtime/ is a layer with a rank. A file may include:
  - a header of its own folder (written without a folder: #include "shard.h"),
  - a header of a folder of lower rank (written with it: #include "base/log.h").
Never a higher folder, never a sibling of the same rank: siblings are peers
that know nothing of each other. Module-level include cycles (a module is a
.c/.h pair) are refused too, inside a folder as well as across folders.

usage: check-layers.py [RUNTIME_DIR]      exit 0 when every include keeps the rules
"""
import os
import re
import sys

# Lowest first. Folders of one rank are siblings.
RANKS = {
    "base": 0,
    "aws": 1,
    "record": 1,
    "lease": 2,
    "source": 2,
    "proc": 2,
    "config": 3,
    "shard": 4,
    "worker": 5,
    "cli": 6,
}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def main(root):
    errors = []
    modules = {}  # "folder/name" -> set of "folder/name" it includes
    for folder in sorted(os.listdir(root)):
        path = os.path.join(root, folder)
        if not os.path.isdir(path):
            continue
        if folder not in RANKS:
            errors.append(f"runtime/{folder}/: a folder without a layer: add it to RANKS in {sys.argv[0]}"
                          " and to runtime/README.md")
            continue
        for name in sorted(os.listdir(path)):
            if not name.endswith((".c", ".h")):
                continue
            module = f"{folder}/{name[:-2]}"
            deps = modules.setdefault(module, set())
            with open(os.path.join(path, name), encoding="utf-8") as f:
                text = f.read()
            for m in INCLUDE.finditer(text):
                line = text.count("\n", 0, m.start()) + 1
                target = m.group(1)
                where = f"runtime/{folder}/{name}:{line}"
                if "/" in target:
                    tfolder = target.split("/", 1)[0]
                    if tfolder == folder:
                        errors.append(f'{where}: #include "{target}": a header of the same folder is included'
                                      f' without the folder ("{target.split("/", 1)[1]}")')
                        continue
                    if tfolder not in RANKS:
                        errors.append(f'{where}: #include "{target}": no such layer')
                        continue
                    if RANKS[tfolder] > RANKS[folder]:
                        errors.append(f'{where}: #include "{target}": {folder}/ (layer {RANKS[folder]}) may not'
                                      f" include {tfolder}/ (layer {RANKS[tfolder]}): arrows point down only")
                    elif RANKS[tfolder] == RANKS[folder]:
                        errors.append(f'{where}: #include "{target}": {folder}/ and {tfolder}/ are siblings'
                                      f" (layer {RANKS[folder]}) and may not include each other")
                    tmod = target[:-2] if target.endswith(".h") else target
                else:
                    if not os.path.exists(os.path.join(path, target)):
                        errors.append(f'{where}: #include "{target}": not in runtime/{folder}/; name the folder'
                                      f' ("layer/{target}")')
                        continue
                    tmod = f"{folder}/{target[:-2]}"
                if tmod != module:
                    deps.add(tmod)
    errors += cycles(modules)
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        print(f"check-layers: {len(errors)} problem(s)", file=sys.stderr)
        return 1
    print(f"check-layers: {len(modules)} modules in {len(RANKS)} layers, every include points down, no cycles")
    return 0


def cycles(modules):
    """Module-level include cycles, each reported once."""
    found, state, stack = [], {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(modules.get(m, ())):
            if state.get(d) == 1:
                cyc = stack[stack.index(d):] + [d]
                found.append("include cycle: " + " -> ".join(cyc))
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(modules):
        if m not in state:
            visit(m)
    return found


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "runtime")))
