"""pixelNeRF-style view synthesizer with a global latent (SMCL `SMCLNet`, spec smcl.md 2.4, 3.2, 7.2).

Re-implemented from the description of pixelNeRF (sxyu/pixel-nerf@91a044b) as modified by SMCL: the
source image goes through the dual-domain encoder and a Linear to one 128-d latent per source view; the
latent conditions a ResnetFC NeRF MLP. The latent's contribution (lin_z) is computed once per object and
broadcast over samples instead of being concatenated to every sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.encoding import PositionalEncoding  # pixelNeRF's module: frequency-major, official buffers
from smcl.object.models.ffc_encoder import (
    OFFICIAL_ABSENT_PREFIXES,
    DualDomainEncoder,
    DualDomainEncoderConfig,
)


@dataclass(frozen=True)
class ViewSynthesizerConfig:
    encoder: DualDomainEncoderConfig = field(default_factory=DualDomainEncoderConfig)
    image_size: int = 64  # source image side; the latent Linear takes 16f * (S/16)^2 features
    d_latent: int = 128
    input_range: str = "unit"  # unit: encoder sees [0,1] (as pretraining); signed: [-1,1] (official)
    num_freqs: int = 6
    freq_factor: float = 1.5
    d_hidden: int = 512
    n_blocks: int = 5
    combine_layer: int = 3
    n_coarse: int = 64
    n_fine: int = 112  # importance samples (official n_fine 128 = 112 importance + 16 depth)
    n_fine_depth: int = 16
    depth_std: float = 0.01
    white_bkgd: bool = True
    chunk_points: int = 100_000  # max points per MLP call during chunked rendering
    mlp_impl: str = "fast"  # fast: tiled fused ResnetFC (per-object latent); reference: official form
    mlp_tile: int = 0  # rows per tile in the fast path; 0: auto per device (see `mlp_tile_rows`)
    mlp_dtype: str = "float32"  # bfloat16: opt-in reduced-precision MLP GEMMs (fast path), not the default


def mlp_tile_rows(device: torch.device | str, d_hidden: int) -> int:
    """Rows per tile of the fused ResnetFC for `device` (mlp_tile 0).

    CPU: 2^20 / d_hidden rows (at least 256), i.e. 4 MB fp32 activation tiles that stay in the L2/L3 cache
    between the block GEMMs (measured fastest on the CPU bench). CUDA and other accelerators: one tile per
    object (every sample row in one GEMM): a GPU has no cache to fit and is starved by small GEMMs and the
    Python loop over tiles.
    """
    if torch.device(device).type == "cpu":
        return max(256, 2**20 // d_hidden)
    return 2**62


class ResnetBlockFC(nn.Module):
    """h + fc_1(ReLU(fc_0(ReLU(h)))), fc_1 zero-initialised so each block starts as the identity."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc_0 = nn.Linear(width, width)
        self.fc_1 = nn.Linear(width, width)
        nn.init.kaiming_normal_(self.fc_0.weight, a=0, mode="fan_in")
        nn.init.zeros_(self.fc_0.bias)
        nn.init.zeros_(self.fc_1.weight)
        nn.init.zeros_(self.fc_1.bias)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.fc_1(F.relu(self.fc_0(F.relu(h))))


class ResnetFC(nn.Module):
    """pixelNeRF ResnetFC: lin_in, latent injected before blocks < combine_layer, mean over sources there.

    Two numerically equivalent implementations (fp32 rounding aside):
    - ``reference``: the official form; the latent is expanded to every sample and pushed through lin_z.
    - ``fast`` (default): the latent's per-block contributions are computed once per object and folded with
      the biases into one per-object vector per block; the MLP runs over row tiles of ``tile`` samples with
      in-place ReLU and the residual add fused into the GEMM (``addmm_``), so the activations of a tile stay
      in cache. Training uses a custom autograd function with the same tiling and a hand-written backward.
    """

    def __init__(self, d_in: int, d_latent: int, d_hidden: int, n_blocks: int, combine_layer: int) -> None:
        super().__init__()
        self.lin_in = nn.Linear(d_in, d_hidden)
        self.blocks = nn.ModuleList([ResnetBlockFC(d_hidden) for _ in range(n_blocks)])
        self.lin_z = nn.ModuleList(
            [nn.Linear(d_latent, d_hidden) for _ in range(min(combine_layer, n_blocks))]
        )
        self.lin_out = nn.Linear(d_hidden, 4)
        self.combine_layer = combine_layer
        self.impl = "fast"
        self.tile = 0  # rows per tile; 0: mlp_tile_rows(device of the input)
        self.compute_dtype = torch.float32
        for lin in [self.lin_in, self.lin_out, *self.lin_z]:
            nn.init.kaiming_normal_(lin.weight, a=0, mode="fan_in")
            nn.init.zeros_(lin.bias)

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        """x (SB, NS, P, d_in), z (SB, NS, d_latent) -> (SB, P, 4) raw outputs."""
        if self.impl == "reference":
            return self.forward_reference(x, z)
        if self.impl != "fast":
            raise ValueError(f"ResnetFC impl must be 'fast' or 'reference', got {self.impl!r}")
        if x.shape[1] == 1:
            return self._forward_fast(x, z)
        return self.forward_broadcast(x, z)  # several sources: mean needs all of them per row

    def forward_reference(self, x: Tensor, z: Tensor) -> Tensor:
        """Official form: z expanded to every sample and concatenated, lin_z applied per sample."""
        zx = torch.cat([z.unsqueeze(2).expand(*x.shape[:3], z.shape[-1]), x], dim=-1)
        zs, xs = zx[..., : z.shape[-1]], zx[..., z.shape[-1] :]
        h = self.lin_in(xs)
        for i, block in enumerate(self.blocks):
            if i == self.combine_layer:
                h = h.mean(dim=1, keepdim=True)
            if i < len(self.lin_z):
                h = h + self.lin_z[i](zs)
            h = block(h)
        if self.combine_layer >= len(self.blocks):
            h = h.mean(dim=1, keepdim=True)
        return self.lin_out(F.relu(h)).squeeze(1)

    def forward_broadcast(self, x: Tensor, z: Tensor) -> Tensor:
        """Autograd form with the latent contribution computed once per object and broadcast."""
        h = self.lin_in(x)
        for i, block in enumerate(self.blocks):
            if i == self.combine_layer:
                h = h.mean(dim=1, keepdim=True)
            if i < len(self.lin_z):
                h = h + self.lin_z[i](z).unsqueeze(2)
            h = block(h)
        if self.combine_layer >= len(self.blocks):
            h = h.mean(dim=1, keepdim=True)
        return self.lin_out(F.relu(h)).squeeze(1)

    def _per_object_bias(self, z: Tensor) -> Tensor:
        """(SB, d_latent) -> (SB, n_blocks + 1, W): row 0 = b_in + lin_z0(z); row i+1 = fc_1 bias of block i
        plus lin_z_{i+1}(z) where the latent enters before block i+1."""
        nb = len(self.blocks)
        rows = [self.lin_in.bias + (self.lin_z[0](z) if len(self.lin_z) > 0 else 0)]
        for i, block in enumerate(self.blocks):
            extra = self.lin_z[i + 1](z) if i + 1 < len(self.lin_z) else 0
            rows.append(block.fc_1.bias + extra)
        return torch.stack([r.expand(z.shape[0], -1) for r in rows], dim=1)[:, : nb + 1]

    def _forward_fast(self, x: Tensor, z: Tensor) -> Tensor:
        x, z = x[:, 0], z[:, 0]  # one source: the mean over sources is the identity
        dev = x.device.type
        # Under autocast (train.precision bf16/fp16) the GEMMs run in the autocast dtype, as nn.Linear's
        # would; the tiled kernels then run with autocast off, so that their preallocated buffers and the
        # GEMM outputs share one explicit dtype. Gradients accumulate in fp32 either way.
        autocast = torch.is_autocast_enabled(dev)
        dtype = torch.get_autocast_dtype(dev) if autocast else self.compute_dtype
        with torch.autocast(dev, enabled=False):
            pre = self._per_object_bias(z.float() if autocast else z)
            w0 = torch.stack([b.fc_0.weight for b in self.blocks])
            b0 = torch.stack([b.fc_0.bias for b in self.blocks])
            w1 = torch.stack([b.fc_1.weight for b in self.blocks])
            args = (
                x.contiguous(),
                pre,
                self.lin_in.weight,
                w0,
                b0,
                w1,
                self.lin_out.weight,
                self.lin_out.bias,
            )
            if any(a.dtype != dtype for a in args):  # reduced-precision GEMMs (mlp_dtype or autocast)
                args = tuple(a.to(dtype) for a in args)
            tile = self.tile or mlp_tile_rows(x.device, self.lin_in.out_features)
            if torch.is_grad_enabled() and any(a.requires_grad for a in args):
                out = _ResnetFCTiled.apply(tile, *args)
            else:
                with torch.no_grad():
                    out = _resnetfc_tiled_forward(tile, *args, save=False)[0]
        return out.to(torch.float32 if autocast else x.dtype)


def _resnetfc_tiled_forward(tile, x, pre, w_in, w0, b0, w1, w_out, b_out, save: bool):
    """Tiled fused ResnetFC forward; x (SB, P, d_in) -> (SB, P, 4). With save, also returns the post-ReLU
    block inputs A (nb+1, SB, P, W) and the inner activations R (nb, SB, P, W) for the backward pass."""
    sb, p, _ = x.shape
    nb, width = w0.shape[0], w0.shape[1]
    out = x.new_empty(sb, p, w_out.shape[0])
    big_a = x.new_empty(nb + 1, sb, p, width) if save else None
    big_r = x.new_empty(nb, sb, p, width) if save else None
    w_in_t, w_out_t = w_in.t(), w_out.t()
    w0_t, w1_t = w0.transpose(1, 2), w1.transpose(1, 2)
    buf_a = x.new_empty(min(tile, p), width)
    buf_r = x.new_empty(min(tile, p), width)
    for s in range(sb):
        for p0 in range(0, p, tile):
            p1 = min(p, p0 + tile)
            h = torch.addmm(pre[s, 0], x[s, p0:p1], w_in_t)
            for i in range(nb):
                a = big_a[i, s, p0:p1] if save else buf_a[: p1 - p0]
                r = big_r[i, s, p0:p1] if save else buf_r[: p1 - p0]
                torch.clamp_min(h, 0.0, out=a)
                torch.addmm(b0[i], a, w0_t[i], out=r)
                r.clamp_min_(0.0)
                h.addmm_(r, w1_t[i])
                h.add_(pre[s, i + 1])
            a = big_a[nb, s, p0:p1] if save else buf_a[: p1 - p0]
            torch.clamp_min(h, 0.0, out=a)
            torch.addmm(b_out, a, w_out_t, out=out[s, p0:p1])
    return out, big_a, big_r


class _ResnetFCTiled(torch.autograd.Function):
    """Autograd wrapper of the tiled forward with a hand-written tiled backward (same math as autograd)."""

    @staticmethod
    def forward(ctx, tile, x, pre, w_in, w0, b0, w1, w_out, b_out):
        out, big_a, big_r = _resnetfc_tiled_forward(tile, x, pre, w_in, w0, b0, w1, w_out, b_out, save=True)
        ctx.save_for_backward(x, w_in, w0, w1, w_out, big_a, big_r)
        ctx.tile = tile
        return out

    @staticmethod
    def backward(ctx, g_out):
        x, w_in, w0, w1, w_out, big_a, big_r = ctx.saved_tensors
        tile = ctx.tile
        nb = w0.shape[0]
        sb, p, _ = x.shape
        g_out = g_out.to(x.dtype).contiguous()
        gx = torch.empty_like(x) if ctx.needs_input_grad[1] else None
        f32 = dict(dtype=torch.float32, device=x.device)  # accumulate in fp32 whatever the compute dtype
        g_pre = torch.zeros(sb, nb + 1, w0.shape[1], **f32)
        g_w_in, g_w0, g_w1 = (
            torch.zeros(w_in.shape, **f32),
            torch.zeros(w0.shape, **f32),
            torch.zeros(w1.shape, **f32),
        )
        g_b0, g_w_out, g_b_out = (
            torch.zeros(w0.shape[:2], **f32),
            torch.zeros(w_out.shape, **f32),
            torch.zeros(w_out.shape[0], **f32),
        )
        thr = torch.ops.aten.threshold_backward
        same = x.dtype == torch.float32

        def acc(dst: Tensor, a: Tensor, b: Tensor) -> None:
            dst.addmm_(a, b) if same else dst.add_(torch.mm(a, b))

        for s in range(sb):
            for p0 in range(0, p, tile):
                p1 = min(p, p0 + tile)
                g = g_out[s, p0:p1]
                a = big_a[nb, s, p0:p1]
                acc(g_w_out, g.t(), a)
                g_b_out += g.sum(0, dtype=torch.float32)
                gh = thr(torch.mm(g, w_out), a, 0.0)
                for i in reversed(range(nb)):
                    g_pre[s, i + 1] += gh.sum(0, dtype=torch.float32)
                    r, a = big_r[i, s, p0:p1], big_a[i, s, p0:p1]
                    acc(g_w1[i], gh.t(), r)
                    gu = thr(torch.mm(gh, w1[i]), r, 0.0)
                    g_b0[i] += gu.sum(0, dtype=torch.float32)
                    acc(g_w0[i], gu.t(), a)
                    gh.add_(thr(torch.mm(gu, w0[i]), a, 0.0))
                g_pre[s, 0] += gh.sum(0, dtype=torch.float32)
                acc(g_w_in, gh.t(), x[s, p0:p1])
                if gx is not None:
                    torch.mm(gh, w_in, out=gx[s, p0:p1])
        grads = (g_pre, g_w_in, g_w0, g_b0, g_w1, g_w_out, g_b_out)
        return None, gx, *(g.to(x.dtype) for g in grads)


class GlobalLatentEncoder(nn.Module):
    """`ImageEncoder` (type global): dual-domain encoder -> flatten -> Linear -> one latent per image."""

    def __init__(self, cfg: ViewSynthesizerConfig) -> None:
        super().__init__()
        self.model = DualDomainEncoder(cfg.encoder)
        side = cfg.image_size // 16
        self.fc = nn.Linear(self.model.out_channels * side * side, cfg.d_latent)
        self.signed = cfg.input_range == "signed"
        if cfg.input_range not in ("unit", "signed"):
            raise ValueError(f"input_range must be 'unit' or 'signed', got {cfg.input_range!r}")
        self.image_size = cfg.image_size

    def forward(self, images: Tensor) -> Tensor:
        """images (N, 3, S, S) in [0, 1] -> (N, d_latent)."""
        return self.fc(self.features(images))

    def features(self, images: Tensor) -> Tensor:
        """images (N, 3, S, S) in [0, 1] -> the flattened encoder output the latent Linear takes."""
        if images.shape[-1] != self.image_size or images.shape[-2] != self.image_size:
            raise ValueError(
                f"encoder expects {self.image_size}x{self.image_size} images, got {tuple(images.shape)}"
            )
        x = images * 2 - 1 if self.signed else images
        return self.model(x).flatten(1)


@dataclass
class Conditioning:
    """Per-object conditioning from the source views: latent (SB, NS, D), world->source-camera rotation."""

    latent: Tensor
    rot: Tensor  # (SB, NS, 3, 3)


class ViewSynthesizer(nn.Module):
    """SMCLNet + NeRF renderer. Rays are (SB, N, 8) = [origin, unit dir, near, far] in world coordinates."""

    def __init__(self, cfg: ViewSynthesizerConfig = ViewSynthesizerConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = GlobalLatentEncoder(cfg)
        self.code = PositionalEncoding(cfg.num_freqs, cfg.freq_factor)
        d_in = self.code.d_out + 3
        args = (d_in, cfg.d_latent, cfg.d_hidden, cfg.n_blocks, cfg.combine_layer)
        self.mlp_coarse = ResnetFC(*args)
        self.mlp_fine = ResnetFC(*args)
        self.set_mlp_impl(cfg.mlp_impl, cfg.mlp_tile, cfg.mlp_dtype)

    def set_mlp_impl(self, impl: str, tile: int | None = None, dtype: str | None = None) -> None:
        """Switch both MLPs between the 'fast' tiled path and the official-form 'reference' path; dtype
        'bfloat16' (fast path only, opt-in) runs the MLP GEMMs in bf16 with fp32 gradient accumulation."""
        if impl not in ("fast", "reference"):
            raise ValueError(f"mlp_impl must be 'fast' or 'reference', got {impl!r}")
        if dtype not in (None, "float32", "bfloat16"):
            raise ValueError(f"mlp_dtype must be 'float32' or 'bfloat16', got {dtype!r}")
        for mlp in (self.mlp_coarse, self.mlp_fine):
            mlp.impl = impl
            if tile is not None:
                mlp.tile = max(0, int(tile))  # 0: chosen per device at each call (mlp_tile_rows)
            if dtype is not None:
                mlp.compute_dtype = getattr(torch, dtype)

    # ---- conditioning and field -------------------------------------------------------------------
    def encode(
        self, src_images: Tensor, src_poses: Tensor, src_features: Tensor | None = None
    ) -> Conditioning:
        """src_images (SB, NS, 3, S, S) in [0,1]; src_poses (SB, NS, 4, 4) camera->world (OpenGL axes).
        src_features (SB, NS, F): precomputed `encoder.features` of the source images (a frozen encoder's
        output can be cached); then only the latent Linear runs and src_images is not read."""
        sb, ns = src_poses.shape[:2]
        if src_features is not None:
            latent = self.encoder.fc(src_features)
        else:
            latent = self.encoder(src_images.flatten(0, 1)).view(sb, ns, -1)
        rot = src_poses[..., :3, :3].transpose(-1, -2)  # R_wc = R_cw^T
        return Conditioning(latent, rot)

    def field(self, cond: Conditioning, points: Tensor, viewdirs: Tensor, fine: bool) -> Tensor:
        """points, viewdirs (SB, P, 3) world -> (SB, P, 4) [rgb in (0,1), sigma >= 0]."""
        xyz = torch.einsum("snij,spj->snpi", cond.rot, points)  # rotation only (normalize_z)
        dirs = torch.einsum("snij,spj->snpi", cond.rot, viewdirs)
        x = torch.cat([self.code(xyz), dirs], dim=-1)
        raw = (self.mlp_fine if fine else self.mlp_coarse)(x, cond.latent)
        return torch.cat([torch.sigmoid(raw[..., :3]), F.relu(raw[..., 3:])], dim=-1)

    # ---- rendering --------------------------------------------------------------------------------
    def _eval(self, cond: Conditioning, rays: Tensor, t: Tensor, fine: bool) -> dict[str, Tensor]:
        pts = rays[..., None, :3] + t[..., None] * rays[..., None, 3:6]  # (SB, N, K, 3)
        sb, n, k = t.shape
        dirs = rays[..., None, 3:6].expand(sb, n, k, 3)
        out = self.field(cond, pts.reshape(sb, n * k, 3), dirs.reshape(sb, n * k, 3), fine)
        out = out.view(sb, n, k, 4)
        return composite(out[..., :3], out[..., 3], t, rays[..., 7], self.cfg.white_bkgd)

    def render_rays(self, cond: Conditioning, rays: Tensor) -> dict[str, Tensor]:
        """(SB, N, 8) rays -> dict rgb_coarse/rgb_fine (SB,N,3), depth_coarse/depth_fine (SB,N)."""
        cfg = self.cfg
        near, far = rays[..., 6:7], rays[..., 7:8]
        t_c = stratified_samples(near, far, cfg.n_coarse, perturb=self.training)
        coarse = self._eval(cond, rays, t_c, fine=False)
        out = {"rgb_coarse": coarse["rgb"], "depth_coarse": coarse["depth"]}
        if cfg.n_fine + cfg.n_fine_depth > 0:
            with torch.no_grad():
                extra = [importance_samples(coarse["weights"], near, far, cfg.n_fine)]
                if cfg.n_fine_depth > 0:
                    d = coarse["depth"][..., None].expand(*coarse["depth"].shape, cfg.n_fine_depth)
                    d = d + torch.randn_like(d) * cfg.depth_std
                    extra.append(torch.maximum(torch.minimum(d, far), near))
                t_f = torch.sort(torch.cat([t_c, *extra], dim=-1), dim=-1).values
            fine = self._eval(cond, rays, t_f, fine=True)
            out.update(rgb_fine=fine["rgb"], depth_fine=fine["depth"])
        return out

    @torch.inference_mode()
    def render_chunked(
        self, cond: Conditioning, rays: Tensor, chunk_points: int | None = None
    ) -> dict[str, Tensor]:
        """Render (SB, N, 8) rays in chunks so at most `chunk_points` (default cfg.chunk_points) samples are
        alive per MLP call."""
        per_ray = self.cfg.n_coarse + self.cfg.n_fine + self.cfg.n_fine_depth
        step = max(1, (chunk_points or self.cfg.chunk_points) // (per_ray * rays.shape[0]))
        parts = [self.render_rays(cond, rays[:, i : i + step]) for i in range(0, rays.shape[1], step)]
        return {k: torch.cat([p[k] for p in parts], dim=1) for k in parts[0]}

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """batch: src_images (SB,NS,3,S,S), src_poses (SB,NS,4,4), rays (SB,N,8), rgb (SB,N,3) in [0,1];
        optional src_features (SB,NS,F) (see `encode`); bn_eval True: the encoder runs in eval mode for
        this step (the official first step). Coarse samples are perturbed in training either way."""
        mode = self.encoder.training
        if batch.get("bn_eval"):
            self.encoder.eval()
        try:
            cond = self.encode(batch["src_images"], batch["src_poses"], batch.get("src_features"))
        finally:
            self.encoder.train(mode)
        out = self.render_rays(cond, batch["rays"])
        losses = {"rgb_coarse": F.mse_loss(out["rgb_coarse"], batch["rgb"])}
        if "rgb_fine" in out:
            losses["rgb_fine"] = F.mse_loss(out["rgb_fine"], batch["rgb"])
        return losses


def stratified_samples(near: Tensor, far: Tensor, n: int, perturb: bool = True) -> Tensor:
    """t = near (1 - s) + far s with s = (i + U) / n (U = 0.5 without perturbation); (..., 1) -> (..., n)."""
    i = torch.arange(n, device=near.device, dtype=near.dtype)
    u = torch.rand(*near.shape[:-1], n, device=near.device, dtype=near.dtype) if perturb else 0.5
    s = (i + u) / n
    return near * (1 - s) + far * s


def importance_samples(weights: Tensor, near: Tensor, far: Tensor, n: int) -> Tensor:
    """Inverse-CDF on the coarse bins: pdf ~ weights + 1e-5, then uniform inside the chosen bin."""
    k = weights.shape[-1]
    w = weights.detach() + 1e-5
    cdf = torch.cumsum(w / w.sum(-1, keepdim=True), dim=-1)
    u = torch.rand(*weights.shape[:-1], n, device=weights.device, dtype=weights.dtype)
    idx = torch.searchsorted(cdf.contiguous(), u.contiguous(), right=True).clamp(max=k - 1)
    s = (idx.to(weights.dtype) + torch.rand_like(u)) / k
    return near * (1 - s) + far * s


def composite(rgb: Tensor, sigma: Tensor, t: Tensor, far: Tensor, white_bkgd: bool) -> dict[str, Tensor]:
    """Alpha compositing: delta_i = t_{i+1} - t_i (last: far - t_last), alpha = 1 - exp(-delta sigma).

    rgb (..., K, 3), sigma/t (..., K), far (...) -> rgb (..., 3), depth (...), weights (..., K).
    """
    delta = torch.cat([t[..., 1:] - t[..., :-1], far[..., None] - t[..., -1:]], dim=-1)
    alpha = 1 - torch.exp(-delta * sigma)
    trans = torch.cumprod(1 - alpha + 1e-10, dim=-1)
    trans = torch.cat([torch.ones_like(trans[..., :1]), trans[..., :-1]], dim=-1)
    weights = alpha * trans
    acc = weights.sum(-1)
    out_rgb = (weights[..., None] * rgb).sum(-2)
    if white_bkgd:
        out_rgb = out_rgb + (1 - acc[..., None])
    return {"rgb": out_rgb, "depth": (weights * t).sum(-1), "weights": weights, "acc": acc}


# Official SMCLNet state_dict (spec 7.2) uses our module names; the encoder's SE keys are absent there.
OFFICIAL_SYNTH_ABSENT_PREFIXES = tuple("encoder.model." + p for p in OFFICIAL_ABSENT_PREFIXES)


def remap_official_smcl_net(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Official `SMCL_latest` / `model.pth` (a plain SMCLNet state_dict, spec 7.2) -> our ViewSynthesizer keys.

    The identity on names (pure, no I/O): the file loads strictly into a synthesizer whose encoder has
    se_mode="random_per_call" (official behaviour) or "none"; the official input range is "signed".
    """
    return dict(state_dict)


def build_view_synthesizer(cfg: ViewSynthesizerConfig | None = None, **overrides) -> ViewSynthesizer:
    """The global-latent view synthesizer (SMCLNet + renderer). `overrides` replace ViewSynthesizerConfig
    fields; `encoder` may be a dict of DualDomainEncoderConfig fields (merged over cfg.encoder)."""
    cfg = cfg or ViewSynthesizerConfig()
    enc = overrides.pop("encoder", None)
    if isinstance(enc, dict):
        enc = replace(cfg.encoder, **enc)
    if enc is not None:
        overrides["encoder"] = enc
    return ViewSynthesizer(replace(cfg, **overrides) if overrides else cfg)
