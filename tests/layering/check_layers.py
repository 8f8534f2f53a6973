#!/usr/bin/env python3
"""Checks the layering of trident's headers (docs/design.md, "Layers").

1. Folders follow the data's path: a header includes trident headers only from its own folder or from folders
   earlier in LAYERS, so folders never include each other in a cycle.
2. Components: a header whose comment says "Part of trident::vision" (or mat, json; "io" means all three) may
   reach, through its includes, only those components' libraries (OpenCV: <opencv2/...>, matio: <matio.h>,
   nlohmann_json: <nlohmann/...>, FAISS: <faiss/...>) and must reach each one it names; a header that names none
   is core and may reach none of them.

  check_layers.py [include-dir]    checks include/trident (default: the one beside this file's project)
  check_layers.py --self-test      checks that broken trees are caught (the check itself can fail)
Exit status 0 when every rule holds; 1 with one line per violation otherwise.
"""
import os
import re
import sys
import tempfile

# The folders in the order of the data's path; "." is config.hpp (below everything) and trident.hpp (the
# umbrella of the core, above everything).
LAYERS = ["core", "io", "data", "ops", "backbone", "detector", "roi", "losses", "memory", "branches", "model",
          "search", "eval", "train", "distributed", "viz"]
LIBRARIES = {"vision": re.compile(r"^opencv2/"), "mat": re.compile(r"^matio\.h$"),
             "json": re.compile(r"^nlohmann/"), "faiss": re.compile(r"^faiss/")}
INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.M)
PART_OF = re.compile(r"Part\s+of\s+trident::(\w+)(?:\s+and\s+trident::(\w+))?")


def rank(header):
    folder = os.path.dirname(header)
    if folder == "":
        return len(LAYERS) if header == "trident.hpp" else -1
    if folder not in LAYERS:
        return None
    return LAYERS.index(folder)


def leading_comment(text):
    lines = []
    for line in text.splitlines():
        if line.startswith("#pragma") or line.strip() == "":
            continue
        if not line.startswith("///"):
            break
        lines.append(line[3:].strip())
    return " ".join(lines)


def check(root):
    headers = {}
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith((".hpp", ".inc")):  # .inc: kernel sources included by a header
                path = os.path.join(folder, name)
                headers[os.path.relpath(path, root).replace(os.sep, "/")] = open(path, encoding="utf-8").read()
    problems = []
    trident_includes, external = {}, {}
    for header, text in headers.items():
        trident_includes[header] = []
        external[header] = set()
        for inc in INCLUDE.findall(text):
            if inc.startswith("trident/"):
                target = inc[len("trident/"):]
                trident_includes[header].append(target)
                if target not in headers:
                    problems.append(f"{header}: includes <{inc}>, which does not exist")
            else:
                external[header].add(inc)
        r = rank(header)
        if r is None:
            problems.append(f"{header}: the folder '{os.path.dirname(header)}' is not in LAYERS "
                            f"(tests/layering/check_layers.py): place it on the data's path")
            continue
        for target in trident_includes[header]:
            t = rank(target)
            if t is not None and t > r:
                problems.append(f"{header}: includes <trident/{target}> from a later layer "
                                f"('{os.path.dirname(target) or '.'}' comes after "
                                f"'{os.path.dirname(header) or '.'}' on the data's path)")

    reached = {}

    def reach(header, stack=()):
        if header in reached:
            return reached[header]
        if header in stack:
            return set()
        libs = set(external.get(header, ()))
        for target in trident_includes.get(header, ()):
            libs |= reach(target, stack + (header,))
        reached[header] = libs
        return libs

    for header, text in sorted(headers.items()):
        declared = set()
        for match in PART_OF.finditer(leading_comment(text)):
            declared |= {c for c in match.groups() if c}
        if "io" in declared:
            declared = {"vision", "mat", "json"}
        unknown = declared - set(LIBRARIES)
        if unknown:
            problems.append(f"{header}: names unknown component(s) {sorted(unknown)}")
        libs = reach(header)
        needs = {c for c, pattern in LIBRARIES.items() if any(pattern.search(lib) for lib in libs)}
        for c in sorted(needs - declared):
            example = sorted(lib for lib in libs if LIBRARIES[c].search(lib))[0]
            what = "trident::trident (core)" if not declared else "its component(s) " + \
                ", ".join(f"trident::{d}" for d in sorted(declared))
            problems.append(f"{header}: reaches <{example}> (trident::{c}) but belongs to {what}; "
                            f"say 'Part of trident::{c}' in its comment or drop the include")
        for c in sorted((declared & set(LIBRARIES)) - needs):
            problems.append(f"{header}: says it is part of trident::{c} but reaches none of its headers")
    return problems


def self_test():
    cases = {
        "a later layer": {"core/a.hpp": "/// x\n#include <trident/model/b.hpp>\n", "model/b.hpp": "/// y\n"},
        "trident::vision": {"core/a.hpp": "/// x\n#include <trident/data/p.hpp>\n",
                            "data/p.hpp": "/// Part of trident::vision.\n#include <opencv2/core.hpp>\n"},
        "reaches none": {"data/p.hpp": "/// Part of trident::json.\n#include <vector>\n"},
        "not in LAYERS": {"gadgets/g.hpp": "/// x\n"},
    }
    good = {"core/a.hpp": "/// x\n", "data/p.hpp": "/// Part of trident::vision and trident::mat.\n"
            "#include <trident/core/a.hpp>\n#include <opencv2/core.hpp>\n#include <matio.h>\n",
            "eval/e.hpp": "/// Part of trident::io.\n#include <trident/data/p.hpp>\n#include <nlohmann/json.hpp>\n"}
    failures = []
    for expected, tree in list(cases.items()) + [("", good)]:
        with tempfile.TemporaryDirectory() as root:
            for name, text in tree.items():
                os.makedirs(os.path.join(root, os.path.dirname(name)), exist_ok=True)
                open(os.path.join(root, name), "w").write(text)
            problems = check(root)
            if expected and not any(expected in p for p in problems):
                failures.append(f"a tree with a '{expected}' violation passed: {problems}")
            if not expected and problems:
                failures.append(f"a correct tree was refused: {problems}")
    for f in failures:
        print("self-test:", f)
    print("check_layers self-test:", "ok" if not failures else "FAILED")
    return 1 if failures else 0


def main(argv):
    if len(argv) > 1 and argv[1] == "--self-test":
        return self_test()
    here = os.path.dirname(os.path.abspath(__file__))
    root = argv[1] if len(argv) > 1 else os.path.join(here, "..", "..", "include", "trident")
    problems = check(root)
    for p in problems:
        print(p)
    count = sum(1 for _, _, files in os.walk(root) for f in files if f.endswith((".hpp", ".inc")))
    print(f"check_layers: {count} headers, {len(problems)} violation(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
