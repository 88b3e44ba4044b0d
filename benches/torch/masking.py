"""MAE's random masking in PyTorch, timed as `cargo bench --bench masking` times the Rust
kernel: N = 256 samples of L tokens of width D = 768, `argsort` of the noise, `argsort` of
that (the restore order), the 0/1 mask in the original order and the `gather` of the kept
25% of the tokens.

Usage: python3 benches/torch/masking.py [L ...]   (default 196 784; 2 threads)
Prints one line per L and variant: the median of 10 runs after 2 warm-up runs, in ms. The
`repeat` variant is MAE's `random_masking` as written (the gather index repeated over D);
`expand` is the same with the index as a broadcast view, PyTorch's faster form.
"""
import statistics
import sys
import time

import torch


def masking(x, noise, keep, repeat):
    order = noise.argsort(dim=1)
    restore = order.argsort(dim=1)
    index = order[:, :keep, None]
    # MAE's code repeats the index over D (a materialised copy); `expand` is a view.
    index = index.repeat(1, 1, x.shape[2]) if repeat else index.expand(-1, -1, x.shape[2])
    kept = x.gather(1, index)
    mask = (restore >= keep).float()
    return kept, mask, restore


def main():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    n, d = 256, 768
    for length in [int(v) for v in sys.argv[1:]] or [196, 784]:
        x = torch.randn(n, length, d)
        keep = int(length * 0.25)
        for repeat in (True, False):
            times = []
            for i in range(12):
                noise = torch.rand(n, length)
                t = time.perf_counter()
                masking(x, noise, keep, repeat)
                if i >= 2:
                    times.append(time.perf_counter() - t)
            variant = "repeat" if repeat else "expand"
            print(f"L = {length} {variant}: {statistics.median(times) * 1e3:.1f} ms "
                  f"(torch {torch.__version__}, 2 threads)")


if __name__ == "__main__":
    main()
