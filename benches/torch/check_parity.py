"""Checks that `miram_torch.py` computes the same model as the Rust code, so that the timings
of `bench_step.py` compare like with like: every model fixture (default `fixtures/model`, or
the folder given) is loaded into the PyTorch model, run on its stored input and masking noise,
and its losses, predictions and gradients are compared with the stored ones (the values the
Rust parity tests also hold to).

Usage: python3 benches/torch/check_parity.py [FIXTURE_DIR]
Exit 0 when every fixture agrees within the fixtures' tolerances (fixtures/README.md).
"""
import json
import pathlib
import sys

import torch
from safetensors import safe_open

from miram_torch import Miram

ROOT = pathlib.Path(__file__).resolve().parents[2]


def worst_relative(got, want):
    return ((got - want).abs().max() / want.abs().max().clamp_min(1e-12)).item()


def check(path):
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    cfg = json.loads(meta["config"])
    model = Miram(cfg)
    state = {k: v for k, v in tensors.items() if not k.startswith("fixture.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    # The sin-cos tables are recomputed, never loaded: compare them instead.
    tables = [k for k in state if k.endswith("pos_embed")]
    for k in tables:
        assert torch.allclose(model.state_dict()[k], state[k], atol=1e-6), f"{path.name}: {k} table differs"
    if missing or unexpected:
        raise SystemExit(f"{path.name}: missing {missing}, unexpected {unexpected}")
    model.zero_grad()
    imgs, noise = tensors["fixture.input.imgs"], tensors["fixture.input.noise"]
    loss, losses = model(imgs, noise)
    loss.backward()
    report = {"loss": abs(loss.item() - tensors["fixture.output.loss"].item())}
    for i, lo in enumerate(losses):
        report[f"loss.{i}"] = abs(lo.item() - tensors[f"fixture.output.loss.{i}"].item())
    grads = dict(model.named_parameters())
    worst_grad, worst_name = 0.0, None
    for name in json.loads(meta["trainable"]):
        g = grads[name].grad
        want = tensors[f"fixture.grad.{name}"]
        r = worst_relative(torch.zeros_like(want) if g is None else g, want)
        if r > worst_grad:
            worst_grad, worst_name = r, name
    ok = all(v <= 1e-4 + 1e-4 * abs(tensors["fixture.output.loss"].item()) for v in report.values())
    ok = ok and worst_grad <= 5e-4
    print(f"{'ok  ' if ok else 'FAIL'} {path.name}: loss diff {report['loss']:.2e}, "
          f"worst gradient {worst_grad:.2e} ({worst_name})")
    return ok


def main():
    folder = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "fixtures" / "model"
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise SystemExit(f"no *.safetensors in {folder}")
    torch.set_num_threads(2)
    results = [check(p) for p in files]
    print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
