"""Runs `miram bench` and the PyTorch step of `bench_step.py` back to back on the same machine
and prints the ratios (miram / PyTorch; below 1 means miram is faster).

Usage:
  python3 benches/torch/compare.py [--miram target/release/miram] [--rounds 3]
                                   [--steps 10] [--threads 2] [ROW ...]

A ROW is PRESET/BATCH[/MODE], MODE one of pretrain (default), single-scale, finetune; e.g.
`tiny/8 micro/32 small/8 tiny/8/single-scale tiny/16/finetune`. Each round runs every row
once in each implementation, alternating, and the medians over rounds are reported, so that
a change in the machine's load hits both sides alike. A mode the `miram` binary does not
support yet is reported as such and skipped. Build the binary first:
`cargo build --release`.

Columns: the median step of each side and their ratio; the masked-encoder forward and its
ratio (`-` for finetune, which has no masking); the peak resident memory of each process
(MiB); and miram's matrix products over its timed steps: their share of the step time, their
own rate (GFLOP/s) and the rate over the whole step (the products of the fused CPU kernels;
see `miram bench --help`), beside the machine's fused multiply-add peak on the same threads
that `miram bench` measured (`peak GF/s`, the limit both rates are read against). A finetune
row times the head of as many classes as `miram bench` reports (`--classes` of
`bench_step.py`).
"""
import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEFAULT_ROWS = ["tiny/8", "micro/32", "small/8", "tiny/8/single-scale", "tiny/16/finetune"]
MIRAM_MODE_FLAGS = {"pretrain": [], "single-scale": ["--single-scale"], "finetune": ["--finetune"]}


def run_json(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        lines = p.stderr.strip().splitlines()
        errors = [l for l in lines if l.startswith("error")]
        return None, (errors or lines or ["exit %d" % p.returncode])[0]
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if not lines:
        return None, "no JSON line on standard output"
    return json.loads(lines[-1]), None


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def fmt(v, digits=2):
    return "-" if v is None else f"{v:.{digits}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rows", nargs="*", default=DEFAULT_ROWS)
    ap.add_argument("--miram", default=str(ROOT / "target" / "release" / "miram"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--matmul", choices=["own", "gemm"],
                    help="miram's CPU product kernel (`miram bench --matmul`; default: the binary's default, own)")
    ap.add_argument("--json", action="store_true", help="print the table as JSON lines too")
    a = ap.parse_args()
    if not pathlib.Path(a.miram).exists():
        sys.exit(f"{a.miram} does not exist: build it with `cargo build --release`")

    rows = []
    for r in a.rows:
        parts = r.split("/")
        if len(parts) not in (2, 3) or not parts[1].isdigit() or (len(parts) == 3 and parts[2] not in MIRAM_MODE_FLAGS):
            sys.exit(f"bad row `{r}`: expected PRESET/BATCH[/pretrain|single-scale|finetune]")
        rows.append((parts[0], int(parts[1]), parts[2] if len(parts) == 3 else "pretrain"))

    results = {row: {"miram": [], "torch": [], "error": None} for row in rows}
    for rnd in range(a.rounds):
        for row in rows:
            preset, batch, mode = row
            res = results[row]
            if res["error"]:
                continue
            cmd = [a.miram, "bench", "--preset", preset, "--batch", str(batch), "--steps", str(a.steps),
                   "--threads", str(a.threads)] + MIRAM_MODE_FLAGS[mode]
            if a.matmul:
                cmd += ["--matmul", a.matmul]
            ours, err = run_json(cmd)
            if ours is None:
                res["error"] = f"miram: {err}"
                continue
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
                json.dump(ours["config"], f)
            torch_cmd = [sys.executable, str(HERE / "bench_step.py"), "--config", f.name, "--mode", mode,
                         "--batch", str(batch), "--steps", str(a.steps), "--threads", str(a.threads)]
            if ours.get("classes") is not None:  # the head miram timed (finetune)
                torch_cmd += ["--classes", str(ours["classes"])]
            theirs, err = run_json(torch_cmd)
            pathlib.Path(f.name).unlink()
            if theirs is None:
                res["error"] = f"torch: {err}"
                continue
            res["miram"].append(ours)
            res["torch"].append(theirs)
            print(f"round {rnd + 1}/{a.rounds} {preset}/{batch}/{mode}: miram {ours['step_ms_median']} ms, "
                  f"torch {theirs['step_ms_median']} ms", file=sys.stderr)

    def med(runs, key):
        vals = [r[key] for r in runs if r.get(key) is not None]
        return statistics.median(vals) if vals else None

    print(f"{'row':<26} {'miram ms':>9} {'torch ms':>9} {'ratio':>6}   {'enc miram':>9} {'enc torch':>9} {'ratio':>6}"
          f"   {'RSS miram':>9} {'RSS torch':>9}   {'mm share':>8} {'mm GF/s':>8} {'step GF/s':>9} {'peak GF/s':>9}")
    for row in rows:
        preset, batch, mode = row
        res = results[row]
        name = f"{preset}/{batch}/{mode}"
        if res["error"]:
            print(f"{name:<26} not measured: {res['error']}")
            continue
        m_step, t_step = med(res["miram"], "step_ms_median"), med(res["torch"], "step_ms_median")
        m_enc, t_enc = med(res["miram"], "masked_encoder_ms_median"), med(res["torch"], "masked_encoder_ms_median")
        m_rss, t_rss = med(res["miram"], "peak_rss_mib"), med(res["torch"], "peak_rss_mib")
        share = med(res["miram"], "matmul_share")
        mm_gf, step_gf = med(res["miram"], "matmul_gflops"), med(res["miram"], "step_gflops")
        peak = med(res["miram"], "fma_peak_gflops")
        print(f"{name:<26} {fmt(m_step, 1):>9} {fmt(t_step, 1):>9} {fmt(ratio(m_step, t_step)):>6}   "
              f"{fmt(m_enc, 1):>9} {fmt(t_enc, 1):>9} {fmt(ratio(m_enc, t_enc)):>6}   {fmt(m_rss, 0):>9} {fmt(t_rss, 0):>9}   "
              f"{fmt(None if share is None else 100 * share, 1) + ('%' if share is not None else ''):>8} "
              f"{fmt(mm_gf, 1):>8} {fmt(step_gf, 1):>9} {fmt(peak, 1):>9}")
        if a.json:
            print(json.dumps({"row": name, "miram_step_ms": m_step, "torch_step_ms": t_step,
                              "step_ratio": ratio(m_step, t_step), "miram_encoder_ms": m_enc,
                              "torch_encoder_ms": t_enc, "encoder_ratio": ratio(m_enc, t_enc),
                              "miram_peak_rss_mib": m_rss, "torch_peak_rss_mib": t_rss,
                              "miram_matmul_share": share, "miram_matmul_gflops": mm_gf,
                              "miram_step_gflops": step_gf,
                              "miram_fma_peak_gflops": peak,
                              "miram_gflop_per_step": med(res["miram"], "gflop_per_step"),
                              "torch_impl": res["torch"][0]["impl"], "miram_impl": res["miram"][0]["impl"]}))


if __name__ == "__main__":
    main()
