#!/usr/bin/env python3
"""Checks `miram export` against PyTorch: a fine-tuned classifier exported with
`--format timm` loads into timm's VisionTransformer with load_state_dict(strict=True) and
gives the scores `miram predict` gives on the same inputs; a pre-trained run exported with
`--format mae` holds every key of the official MAE code's MaskedAutoencoderViT, with its
shapes.

Without --finetune-run it makes its own runs first, on generated data (`miram synth`, one
epoch of `micro` pre-training, one epoch of fine-tuning). The inputs are the model inputs
`miram predict --save-inputs` wrote, so both sides score exactly the same tensors and the
check is of the export alone (names, shapes, layout, the position table, the pooling). The
timm check runs twice: on the run as trained, and on a copy of it whose weights are random
and of order one (a briefly trained head is near zero, which would hide an encoder tensor
exported wrong).

    pip install torch timm safetensors numpy
    cargo build --release
    python3 benches/torch/check_export.py                 # generated runs, in a temporary folder
    python3 benches/torch/check_export.py --finetune-run runs/ft --data ~/CBIS-DDSM

It prints one line per check and a JSON summary, and exits non-zero when a check fails.
"""

import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
import timm
from safetensors import safe_open
from safetensors.torch import load_file

# Largest differences accepted (measured: docs/export.md). Scores are probabilities; the
# log-odds are differences of logits (log p_i - log p_0 = z_i - z_0).
F32_SCORE_TOL = 1e-5
F32_LOGIT_TOL = 1e-4
# f16 / bf16 exports: the weights are rounded, so the logits move with them: the log-odds
# differences are bounded relative to the largest log-odds (at least 1).
LOW_PRECISION_LOGIT_RTOL = {"f16": 1e-3, "bf16": 1e-2}


def run(cmd):
    print("$", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True)


def make_runs(miram, work):
    """Generated data, a one-epoch `micro` pre-training and a one-epoch fine-tuning from it."""
    data, pre, ft = (os.path.join(work, d) for d in ("data", "pre", "ft"))
    synth = os.path.join(work, "synth.toml")
    with open(synth, "w") as f:
        f.write("patients = 8\nimage_width = 256\nimage_height = 416\n")
    run([miram, "--quiet", "synth", "--out", data, "--config", synth, "--seed", "5"])
    run([miram, "--quiet", "pretrain", "--data", data, "--preset", "micro", "--epochs", "1",
         "--batch-size", "8", "--accum-iter", "1", "--out", pre])
    run([miram, "--quiet", "finetune", "--data", data, "--init", pre, "--task", "pathology",
         "--epochs", "1", "--batch-size", "8", "--bootstrap", "0", "--out", ft])
    return data, pre, ft


def randomized_run(ft, out, seed=0):
    """A copy of the fine-tuning run `ft` whose best checkpoint holds random weights of the
    same names and shapes (numpy's seeded generator): a briefly trained classifier's head is
    near zero (MAE's initialisation), so its scores hardly depend on the encoder; with every
    tensor random and of order one, a tensor misnamed, transposed or left out moves the
    scores far beyond the tolerances."""
    from safetensors.numpy import load_file as load_np, save_file as save_np

    if os.path.exists(out):
        shutil.rmtree(out)
    shutil.copytree(ft, out, ignore=shutil.ignore_patterns(".lock", "step-*"))
    best = os.path.join(out, "checkpoints", "best.safetensors")
    meta = metadata(best)
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, t in sorted(load_np(best).items()):
        if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name.startswith("fc_norm.weight"):
            v = 1.0 + 0.2 * rng.standard_normal(t.shape)
        elif name.startswith("head."):
            v = 0.5 * rng.standard_normal(t.shape)
        else:
            fan_in = int(np.prod(t.shape[1:])) if t.ndim > 1 else 1
            v = rng.standard_normal(t.shape) * (1.0 / math.sqrt(fan_in) if t.ndim > 1 else 0.1)
        tensors[name] = v.astype(t.dtype)
    save_np(tensors, best, metadata=meta)
    return out


def read_scores(path):
    """The score_<class> columns of a predictions CSV, in the header's (the classes') order."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise SystemExit(f"{path}: no rows")
    names = [c for c in rows[0].keys() if c.startswith("score_")]
    return names, np.array([[float(r[c]) for c in names] for r in rows], dtype=np.float64)


def metadata(path):
    with safe_open(path, framework="pt") as f:
        return f.metadata() or {}


def timm_check(miram, ft, data, work, summary, label):
    work = os.path.join(work, label)
    os.makedirs(work, exist_ok=True)
    inputs_npy = os.path.join(work, "inputs.npy")
    scores_csv = os.path.join(work, "scores.csv")
    run([miram, "--quiet", "predict", "--model", ft, data, "--split", "all",
         "--out", scores_csv, "--save-inputs", inputs_npy])
    names, want = read_scores(scores_csv)
    x = torch.from_numpy(np.load(inputs_npy))
    ok = True
    for dtype in ("f32", "f16", "bf16"):
        path = os.path.join(work, f"timm-{dtype}.safetensors")
        run([miram, "--quiet", "export", "--model", ft, "--format", "timm", "--dtype", dtype,
             "--out", path])
        kwargs = json.loads(metadata(path)["timm_kwargs"])
        model = timm.create_model("vit_base_patch16_224", pretrained=False, **kwargs)
        state = {k: v.float() for k, v in load_file(path).items()}
        model.load_state_dict(state, strict=True)
        model.eval()
        with torch.no_grad():
            logits = model(x).double()
        got = torch.softmax(logits, dim=-1).numpy()
        if got.shape != want.shape:
            raise SystemExit(f"{path}: scores of shape {got.shape}; miram predict's {want.shape}")
        d_score = float(np.abs(got - want).max())
        # Log-odds against class 0 from miram's scores and timm's logits.
        ours = np.log(np.clip(want, 1e-300, None))
        theirs = (logits - logits[:, :1]).numpy()
        d_logit = float(np.abs((ours - ours[:, :1]) - theirs).max())
        spread = float(np.abs(theirs).max())
        if dtype == "f32":
            passed = d_score <= F32_SCORE_TOL and d_logit <= F32_LOGIT_TOL
            tol = f"<= {F32_SCORE_TOL:g} / {F32_LOGIT_TOL:g}"
        else:
            rtol = LOW_PRECISION_LOGIT_RTOL[dtype]
            passed = d_logit <= rtol * max(1.0, spread)
            tol = f"log-odds <= {rtol:g} x max(1, largest)"
        ok &= passed
        print(f"{'ok  ' if passed else 'FAIL'} timm {dtype}, {label}: {len(want)} inputs, "
              f"{len(names)} classes, max |score diff| {d_score:.3g}, max |log-odds diff| "
              f"{d_logit:.3g} ({tol}; largest log-odds {spread:.3g}); strict load of "
              f"{len(state)} tensors")
        summary[f"timm_{dtype}_{label}"] = {"inputs": len(want), "max_score_diff": d_score,
                                           "max_log_odds_diff": d_logit, "max_log_odds": spread,
                                           "passed": passed}
    return ok


def timm_kwargs_of(miram, ft, work):
    path = os.path.join(work, "kwargs.safetensors")
    run([miram, "--quiet", "export", "--model", ft, "--format", "timm", "--out", path])
    return json.loads(metadata(path)["timm_kwargs"])


def mae_keys(cfg):
    """The keys and shapes of the official MAE code's MaskedAutoencoderViT.state_dict() for a
    MIRAM configuration (its encoder and its 1x decoder)."""
    d, dd, p, c = cfg["embed_dim"], cfg["decoder_embed_dim"], cfg["patch_size"], cfg["in_chans"]
    n = (cfg["img_size"] // p) ** 2

    def block(prefix, w):
        h = int(w * cfg["mlp_ratio"])
        return {
            f"{prefix}.norm1.weight": [w], f"{prefix}.norm1.bias": [w],
            f"{prefix}.attn.qkv.weight": [3 * w, w], f"{prefix}.attn.qkv.bias": [3 * w],
            f"{prefix}.attn.proj.weight": [w, w], f"{prefix}.attn.proj.bias": [w],
            f"{prefix}.norm2.weight": [w], f"{prefix}.norm2.bias": [w],
            f"{prefix}.mlp.fc1.weight": [h, w], f"{prefix}.mlp.fc1.bias": [h],
            f"{prefix}.mlp.fc2.weight": [w, h], f"{prefix}.mlp.fc2.bias": [w],
        }

    keys = {
        "cls_token": [1, 1, d], "pos_embed": [1, n + 1, d],
        "patch_embed.proj.weight": [d, c, p, p], "patch_embed.proj.bias": [d],
        "norm.weight": [d], "norm.bias": [d],
        "decoder_embed.weight": [dd, d], "decoder_embed.bias": [dd],
        "mask_token": [1, 1, dd], "decoder_pos_embed": [1, n + 1, dd],
        "decoder_norm.weight": [dd], "decoder_norm.bias": [dd],
        "decoder_pred.weight": [p * p * c, dd], "decoder_pred.bias": [p * p * c],
    }
    for i in range(cfg["depth"]):
        keys.update(block(f"blocks.{i}", d))
    for i in range(cfg["decoder_depth"]):
        keys.update(block(f"decoder_blocks.{i}", dd))
    return keys


def mae_check(miram, pre, work, summary):
    path = os.path.join(work, "mae.safetensors")
    run([miram, "--quiet", "export", "--model", pre, "--format", "mae", "--out", path])
    cfg = json.loads(metadata(path)["miram_config"])
    tensors = load_file(path)
    want = mae_keys(cfg)
    problems = [f"missing {k}" for k in want if k not in tensors]
    problems += [f"{k}: {list(tensors[k].shape)}, MAE's {s}" for k, s in want.items()
                 if k in tensors and list(tensors[k].shape) != s]
    extra = sorted(k for k in tensors if k not in want)
    problems += [f"unexpected {k}" for k in extra if not k.startswith("decoders.")]
    # The fixed tables are MAE's sin-cos tables: rows of sines and cosines, the class row zero.
    pe = tensors["pos_embed"][0] if "pos_embed" in tensors else None
    if pe is not None and (pe[0].abs().max() != 0 or pe[1:].abs().max() > 1 + 1e-6):
        problems.append("pos_embed is not a sin-cos table with a zero class row")
    passed = not problems
    print(f"{'ok  ' if passed else 'FAIL'} mae: {len(want)} keys of MaskedAutoencoderViT present with "
          f"their shapes, {len(extra)} more of the other scales' decoders (decoders.*)"
          + "".join(f"\n     {p}" for p in problems))
    summary["mae"] = {"keys": len(want), "extra": len(extra), "problems": problems,
                      "passed": passed}
    return passed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--miram", default="target/release/miram", help="the miram binary")
    ap.add_argument("--finetune-run", help="a fine-tuning run folder (default: make one)")
    ap.add_argument("--pretrain-run", help="a pre-training run folder for the MAE check")
    ap.add_argument("--data", help="the dataset folder the fine-tuning run scores")
    ap.add_argument("--work", help="folder for the exports and scores (default: temporary)")
    a = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    work = a.work or tempfile.mkdtemp(prefix="miram-export-")
    os.makedirs(work, exist_ok=True)
    if a.finetune_run:
        if not a.data:
            raise SystemExit("--finetune-run needs --data: the dataset folder to score")
        data, pre, ft = a.data, a.pretrain_run, a.finetune_run
    else:
        data, pre, ft = make_runs(a.miram, work)
    summary = {"torch": torch.__version__, "timm": timm.__version__, "work": work}
    print(f"timm_kwargs of the run: {timm_kwargs_of(a.miram, ft, work)}")
    ok = timm_check(a.miram, ft, data, work, summary, "trained")
    random_ft = randomized_run(ft, os.path.join(work, "ft-random"))
    ok &= timm_check(a.miram, random_ft, data, work, summary, "random-weights")
    if pre:
        ok &= mae_check(a.miram, pre, work, summary)
    print(json.dumps(summary))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
