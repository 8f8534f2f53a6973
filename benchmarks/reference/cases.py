"""The benchmark cases both programs understand, from the shared command-line options (--only, --sizes,
--batches, --gallery). Shared by bench_reference.py and compare.py; bench_network.cpp spells the same names."""


def selected_cases(a):
    only = a.only.split(",")
    out = []
    if "resnet50" in only:
        out.append("resnet50-224")
    if "infer" in only:
        out += [f"infer-{s}" for s in a.sizes.split(",") if s]
    if "train" in only:
        out += [f"train-b{b}" for b in a.batches.split(",") if b]
    if "search" in only:
        out += [f"search-{n}" for n in a.gallery.split(",") if n]
    return out
