"""The benchmark cases both programs understand, from the shared command-line options (--only, --sizes,
--infer-batches, --batches, --gallery). Shared by bench_reference.py and compare.py; bench_network.cpp spells the
same names:

  resnet50-224     the ResNet-50 classification yardstick
  infer-HxW        one image of HxW (an inference batch of 1): stage by stage and through detect()
  infer-bB-HxW     B images of HxW in one batch through detect(), for every B > 1 of --infer-batches
  train-bB         one training iteration at batch B
  search-N         one query against a gallery of N
"""


def infer_cases(size, infer_batches):
    """The inference cases of one size: batch 1 keeps the name infer-HxW, batch B > 1 is infer-bB-HxW."""
    out = []
    for b in infer_batches.split(","):
        if not b:
            continue
        if not b.isdigit() or int(b) < 1:
            raise SystemExit(f"--infer-batches expects batch sizes >= 1, got '{b}'")
        b = int(b)
        out.append(f"infer-{size}" if b == 1 else f"infer-b{b}-{size}")
    return out


def selected_cases(a):
    only = a.only.split(",")
    # --infer-batches is optional for a caller (compare.py passes it only when given): absent or None means 1
    infer_batches = getattr(a, "infer_batches", None) or "1"
    out = []
    if "resnet50" in only:
        out.append("resnet50-224")
    if "infer" in only:
        for s in a.sizes.split(","):
            if s:
                out += infer_cases(s, infer_batches)
    if "train" in only:
        out += [f"train-b{b}" for b in a.batches.split(",") if b]
    if "search" in only:
        out += [f"search-{n}" for n in a.gallery.split(",") if n]
    return out
