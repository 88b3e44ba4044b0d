"""Times one training step of MIRAM in PyTorch on the CPU, with the fields of `miram bench`.

Usage:
  python3 benches/torch/bench_step.py --config CONFIG.json [--mode MODE] [--batch 8]
                                      [--steps 10] [--threads 2] [--classes 2]

CONFIG.json is a model configuration (the `MiramConfig` schema of docs/formats.md); `miram
bench` prints the one it used under `"config"`, and `compare.py` passes it on. MODE:
  pretrain      forward + backward + AdamW of the multi-scale model (every scale)
  single-scale  the same with the first (1x) decoder only: MAE's step
  finetune      the classifier (encoder, mean pool, fc_norm, head): forward + class-weighted
                cross-entropy + backward + AdamW
The pre-training modes also time the masked-encoder forward (no gradient; null for
finetune, whose process then holds the classifier alone, so its peak memory is the
classifier's). Prints one JSON line:
impl, mode, batch, threads, step_ms_median, masked_encoder_ms_median, params, peak_rss_mib,
rss_before_model_mib (what the process held after `import torch`, before any model).
Medians over STEPS after 2 warm-up iterations.
"""
import argparse
import json
import resource
import statistics
import time

import torch
import torch.nn.functional as F

from miram_torch import Classifier, Miram, adamw


def timed(fn, steps):
    out = []
    for i in range(steps + 2):
        t = time.perf_counter()
        fn()
        if i >= 2:
            out.append(time.perf_counter() - t)
    return round(statistics.median(out) * 1e3, 2)


def rss_mib():
    """Resident memory of this process now, in MiB (Linux), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def main():
    baseline = rss_mib()  # torch's own libraries, before any model exists
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="model configuration JSON file ('-' for stdin)")
    ap.add_argument("--mode", default="pretrain", choices=["pretrain", "single-scale", "finetune"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--classes", type=int, default=2, help="classes of the finetune head")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.batch < 1 or a.steps < 1 or a.threads < 1 or a.classes < 1:
        ap.error("--batch, --steps, --threads and --classes must be at least 1")
    with open(a.config) if a.config != "-" else open(0) as f:
        cfg = json.load(f)
    cfg = cfg.get("config", cfg)  # a whole `miram bench` line is accepted too
    if a.mode == "single-scale":
        cfg = dict(cfg, scales=cfg["scales"][:1])

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    c, s = cfg["in_chans"], cfg["img_size"]
    length = (s // cfg["patch_size"]) ** 2
    imgs = torch.randn(a.batch, c, s, s)
    if a.mode == "finetune":
        model = Classifier(cfg, a.classes)
        opt = adamw(model, 1e-4, 0.05, (0.9, 0.999))
        labels = torch.arange(a.batch) % a.classes
        weights = torch.full((a.classes,), 1.0)

        def step():
            loss = F.cross_entropy(model(imgs), labels, weight=weights)
            opt.zero_grad(set_to_none=False)
            loss.backward()
            opt.step()
    else:
        model = Miram(cfg)
        opt = adamw(model, 1e-4, 0.05, (0.9, 0.95))

        def step():
            loss, _ = model(imgs, torch.rand(a.batch, length))
            opt.zero_grad(set_to_none=False)
            loss.backward()
            opt.step()

    step_ms = timed(step, a.steps)
    enc_ms = None
    if a.mode != "finetune":
        with torch.no_grad():
            enc_ms = timed(lambda: model.encode_masked(imgs, torch.rand(a.batch, length)), a.steps)
    print(json.dumps({
        "impl": "torch " + torch.__version__,
        "mode": a.mode,
        "batch": a.batch,
        "threads": a.threads,
        "step_ms_median": step_ms,
        "masked_encoder_ms_median": enc_ms,
        "params": sum(p.numel() for p in model.parameters()),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_before_model_mib": baseline,
    }))


if __name__ == "__main__":
    main()
