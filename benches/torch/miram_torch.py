"""MIRAM in plain PyTorch, for timing the Rust implementation against PyTorch on the same machine.

This is the model of `docs/architecture.md` written with stock PyTorch modules, under the
parameter names of the Rust checkpoints, so that a fixture's weights load into it unchanged
(`check_parity.py` does that and compares the loss). It takes the model configuration as the
JSON object that `miram bench` prints under `"config"` (the `MiramConfig` schema of
`docs/formats.md`).

Nothing here is imported by the Rust code; it needs only `torch` (and `safetensors` for
`check_parity.py`).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


# --- fixed tables --------------------------------------------------------------------------

def _sincos(dim, positions):
    """[len(positions), dim]: sin of position x frequency, then cos (MAE's 1-D table)."""
    freqs = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    angles = positions.to(torch.float64)[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_table(dim, grid):
    """[1, 1 + grid^2, dim]: row 0 (the cls token) is zero; the first half of each row encodes
    the column of the patch and the second half its row, as MAE's table does."""
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    table = torch.cat([_sincos(dim // 2, cols.reshape(-1)), _sincos(dim // 2, rows.reshape(-1))], dim=1)
    table = torch.cat([torch.zeros(1, dim, dtype=torch.float64), table], dim=0)
    return table.float().unsqueeze(0)


def to_patches(images, p):
    """[N, C, H, W] -> [N, (H/p)(W/p), p*p*C], channels last inside a patch."""
    n, c, h, w = images.shape
    x = images.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(n, (h // p) * (w // p), p * p * c)


# --- attention kinds ------------------------------------------------------------------------

def _heads(x, h):
    """[N, n, D] -> [N, h, n, D/h]."""
    n, t, d = x.shape
    return x.reshape(n, t, h, d // h).transpose(1, 2)


def _merge(x):
    """[N, h, n, d] -> [N, n, h*d]."""
    n, h, t, d = x.shape
    return x.transpose(1, 2).reshape(n, t, h * d)


class Softmax(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        q, k, v = (_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))
        w = torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5, dim=-1)
        return self.proj(_merge(w @ v))


class Linformer(nn.Module):
    def __init__(self, dim, heads, seq_len, k, one_kv_head, share_kv):
        super().__init__()
        self.heads, self.k, self.share = heads, k, share_kv
        kv = dim // heads if one_kv_head else dim
        bound = 1.0 / math.sqrt(k)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, kv, bias=False)
        self.proj_k = nn.Parameter(torch.empty(seq_len, k).uniform_(-bound, bound))
        if not share_kv:
            self.to_v = nn.Linear(dim, kv, bias=False)
            self.proj_v = nn.Parameter(torch.empty(seq_len, k).uniform_(-bound, bound))
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x):
        n, t, _ = x.shape
        q = _heads(self.to_q(x), self.heads)
        dh = q.shape[-1]
        k_tokens = self.to_k(x)
        v_tokens = k_tokens if self.share else self.to_v(x)
        pk = self.proj_k[:t]
        pv = pk if self.share else self.proj_v[:t]
        # Project along the sequence: [N, t, e] -> [N, k, e], then split into kv heads.
        keys = (pk.t() @ k_tokens).reshape(n, self.k, -1, dh).transpose(1, 2)
        values = (pv.t() @ v_tokens).reshape(n, self.k, -1, dh).transpose(1, 2)
        w = torch.softmax(q @ keys.transpose(-1, -2) * dh ** -0.5, dim=-1)
        return self.to_out(_merge(w @ values))


def _iterative_pinv(a, iterations):
    """Moore-Penrose pseudo-inverse by the iterative scheme of Razavi et al., started from
    a^T scaled by the largest row sum times the largest column sum of each matrix."""
    mag = a.abs()
    scale = mag.sum(-1).amax(-1)[..., None, None] * mag.sum(-2).amax(-1)[..., None, None]
    z = a.transpose(-1, -2) / scale
    eye = torch.eye(a.shape[-1], dtype=a.dtype)
    for _ in range(iterations):
        az = a @ z
        z = 0.25 * z @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az)))
    return z


class Nystrom(nn.Module):
    def __init__(self, dim, heads, landmarks, pinv_iterations, residual_conv_kernel):
        super().__init__()
        self.heads, self.m, self.iters, self.kernel = heads, landmarks, pinv_iterations, residual_conv_kernel
        self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim)
        if residual_conv_kernel:
            self.res_conv = nn.Conv2d(heads, heads, (residual_conv_kernel, 1),
                                      padding=(residual_conv_kernel // 2, 0), groups=heads, bias=False)

    def forward(self, x):
        n, t, _ = x.shape
        front = (-t) % self.m
        x = F.pad(x, (0, 0, front, 0))
        q, k, v = (_heads(u, self.heads) for u in self.to_qkv(x).chunk(3, dim=-1))
        q = q * q.shape[-1] ** -0.5
        group = (t + front) // self.m
        q_land = q.reshape(n, self.heads, self.m, group, -1).mean(3)
        k_land = k.reshape(n, self.heads, self.m, group, -1).mean(3)
        left = torch.softmax(q @ k_land.transpose(-1, -2), dim=-1)
        middle = torch.softmax(q_land @ k_land.transpose(-1, -2), dim=-1)
        right = torch.softmax(q_land @ k.transpose(-1, -2), dim=-1)
        out = (left @ _iterative_pinv(middle, self.iters)) @ (right @ v)
        if self.kernel:
            out = out + self.res_conv(v)
        return self.to_out(_merge(out))[:, front:]


def _orthogonal_features(rows, cols):
    """rows x cols Gaussian orthogonal random features (blocks of Q^T, rows rescaled by the
    norms of Gaussian vectors), as Performer draws them."""
    blocks = []
    while sum(b.shape[0] for b in blocks) < rows:
        q, _ = torch.linalg.qr(torch.randn(cols, cols))
        blocks.append(q.t())
    mat = torch.cat(blocks)[:rows]
    return torch.randn(rows, cols).norm(dim=1)[:, None] * mat


def _positive_features(x, proj, over_tokens, eps=1e-4):
    scale = x.shape[-1] ** -0.25
    dash = (x * scale) @ proj.t()
    sq = (x * x).sum(-1, keepdim=True) * (scale * scale) / 2.0
    dims = (-1, -2) if over_tokens else (-1,)
    stabiliser = dash.amax(dim=dims, keepdim=True).detach()
    return proj.shape[0] ** -0.5 * (torch.exp(dash - sq - stabiliser) + eps)


class Performer(nn.Module):
    def __init__(self, dim, heads, nb_features):
        super().__init__()
        self.heads = heads
        dh = dim // heads
        nb = nb_features or int(dh * math.log(dh))
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)
        self.register_buffer("projection_matrix", _orthogonal_features(nb, dh))

    def forward(self, x):
        q = _positive_features(_heads(self.to_q(x), self.heads), self.projection_matrix, False)
        k = _positive_features(_heads(self.to_k(x), self.heads), self.projection_matrix, True)
        v = _heads(self.to_v(x), self.heads)
        context = k.transpose(-1, -2) @ v                        # [N, h, features, d]
        norm = q @ k.sum(-2, keepdim=True).transpose(-1, -2)      # [N, h, n, 1]
        return self.to_out(_merge((q @ context) / norm))


def attention(kind, dim, heads, seq_len):
    name = kind["kind"]
    if name == "softmax":
        return Softmax(dim, heads)
    if name == "linformer":
        return Linformer(dim, heads, seq_len, kind["k"], kind.get("one_kv_head", True), kind.get("share_kv", True))
    if name == "nystrom":
        return Nystrom(dim, heads, kind["landmarks"], kind.get("pinv_iterations", 6),
                       kind.get("residual_conv_kernel", 33))
    if name == "performer":
        return Performer(dim, heads, kind.get("nb_features"))
    raise ValueError(f"unknown attention kind {name!r}")


# --- blocks, encoder, decoders --------------------------------------------------------------

class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim, mlp_ratio, attn):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = attn
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, chans, dim, patch):
        super().__init__()
        self.proj = nn.Conv2d(chans, dim, patch, patch)

    def forward(self, images):
        return self.proj(images).flatten(2).transpose(1, 2)


class VitBase(nn.Module):
    """The ViT encoder's parts under MAE/timm names, at the top level of the module (the
    checkpoint names have no prefix): `patch_embed`, `cls_token`, `pos_embed`, `blocks`."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d, grid = cfg["embed_dim"], cfg["img_size"] // cfg["patch_size"]
        self.patch_embed = PatchEmbed(cfg["in_chans"], d, cfg["patch_size"])
        self.cls_token = nn.Parameter(0.02 * torch.randn(1, 1, d))
        self.register_buffer("pos_embed", sincos_table(d, grid))
        self.blocks = nn.ModuleList(
            Block(d, cfg["mlp_ratio"], Softmax(d, cfg["num_heads"])) for _ in range(cfg["depth"]))

    def tokens(self, images):
        return self.patch_embed(images) + self.pos_embed[:, 1:]

    def run_blocks(self, x):
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for block in self.blocks:
            x = block(x)
        return x


class ScaleDecoder(nn.Module):
    def __init__(self, cfg, scale_cfg):
        super().__init__()
        d, s = cfg["decoder_embed_dim"], scale_cfg["scale"]
        grid = cfg["img_size"] // cfg["patch_size"] * s
        self.scale = s
        self.register_buffer("pos_embed", sincos_table(d, grid))
        self.blocks = nn.ModuleList(
            Block(d, cfg["mlp_ratio"], attention(scale_cfg["attention"], d, cfg["decoder_num_heads"], grid * grid + 1))
            for _ in range(cfg["decoder_depth"]))
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.pred = nn.Linear(d, cfg["patch_size"] ** 2 * cfg["in_chans"])

    def forward(self, grid_tokens, cls):
        n, length, d = grid_tokens.shape
        g, s = math.isqrt(length), self.scale
        x = grid_tokens.reshape(n, g, 1, g, 1, d).expand(n, g, s, g, s, d).reshape(n, g * s * g * s, d)
        x = torch.cat([cls, x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.pred(self.norm(x))[:, 1:]


class Miram(VitBase):
    """Encoder (with its final `norm`), shared `decoder_embed` and `mask_token`, one decoder
    per scale."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.norm = nn.LayerNorm(cfg["embed_dim"], eps=1e-6)
        self.decoder_embed = nn.Linear(cfg["embed_dim"], cfg["decoder_embed_dim"])
        self.mask_token = nn.Parameter(0.02 * torch.randn(1, 1, cfg["decoder_embed_dim"]))
        self.decoders = nn.ModuleList(ScaleDecoder(cfg, sc) for sc in cfg["scales"])

    def encode_masked(self, images, noise):
        """Masked encoder forward: (latent [N, 1 + keep, D], mask [N, L], restore [N, L])."""
        x = self.tokens(images)
        n, length, d = x.shape
        keep = int(length * (1 - self.cfg["mask_ratio"]))
        order = noise.argsort(dim=1)
        restore = order.argsort(dim=1)
        x = x.gather(1, order[:, :keep, None].expand(-1, -1, d))
        mask = (restore >= keep).float()
        return self.norm(self.run_blocks(x)), mask, restore

    def decode(self, latent, restore):
        x = self.decoder_embed(latent)
        n, length = restore.shape
        fill = self.mask_token.expand(n, length + 1 - x.shape[1], -1)
        grid = torch.cat([x[:, 1:], fill], dim=1).gather(1, restore[:, :, None].expand(-1, -1, x.shape[2]))
        return [dec(grid, x[:, :1]) for dec in self.decoders]

    def target(self, images, scale):
        if scale > 1:
            images = images.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
        t = to_patches(images, self.cfg["patch_size"])
        if self.cfg["norm_pix_loss"]:
            t = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True) + 1e-6).sqrt()
        return t

    def forward(self, images, noise):
        """(total loss, per-scale losses)."""
        latent, mask, restore = self.encode_masked(images, noise)
        losses = []
        for sc, pred in zip(self.cfg["scales"], self.decode(latent, restore)):
            err = ((pred - self.target(images, sc["scale"])) ** 2).mean(-1)
            if sc["loss_on"] == "masked":
                s = sc["scale"]
                g = math.isqrt(mask.shape[1])
                m = mask.reshape(-1, g, 1, g, 1).expand(-1, g, s, g, s).reshape(mask.shape[0], -1)
                losses.append((err * m).sum() / m.sum())
            else:
                losses.append(err.mean())
        return sum(sc["weight"] * lo for sc, lo in zip(self.cfg["scales"], losses)), losses


class Classifier(VitBase):
    """MAE's fine-tuning ViT: the encoder blocks, the mean of the patch tokens, `fc_norm`,
    `head` (no final `norm`)."""

    def __init__(self, cfg, num_classes):
        super().__init__(cfg)
        self.fc_norm = nn.LayerNorm(cfg["embed_dim"], eps=1e-6)
        self.head = nn.Linear(cfg["embed_dim"], num_classes)

    def forward(self, images):
        x = self.run_blocks(self.tokens(images))
        return self.head(self.fc_norm(x[:, 1:].mean(dim=1)))


def decays(name, param):
    """MAE's parameter groups: weight decay on tensors of rank >= 2 that are not biases."""
    return param.ndim >= 2 and not name.endswith(".bias")


def adamw(model, lr, weight_decay, betas):
    named = list(model.named_parameters())
    return torch.optim.AdamW(
        [{"params": [p for n, p in named if decays(n, p)], "weight_decay": weight_decay},
         {"params": [p for n, p in named if not decays(n, p)], "weight_decay": 0.0}],
        lr=lr, betas=betas)
