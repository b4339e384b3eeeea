"""R-MSA: PAPR-style proximity attention (spec smcl.md 2.6).

For each ray the K points with the smallest perpendicular distance to the ray are selected with a
tiled running top-k (memory bounded by ray_chunk x point_chunk, never rays x points x 3 at full size);
keys (point, along-ray and perpendicular offsets), query (ray direction) and values (offsets + point
features) are embedded with positional encodings and MLPs; scaled dot-product scores (ReLU) times the
influence scores compete with a constant background token in a softmax.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from common.encoding import positional_encoding

EPS = 1e-6


@dataclass(frozen=True)
class RMSAConfig:
    d_model: int = 256
    d_value: int = 32
    d_feat: int = 64  # per-point features appended to the values
    num_freqs_k: int = 6
    num_freqs_q: int = 6
    num_freqs_v: int = 6
    kq_layers: int = 5
    v_layers: int = 8
    hidden: int = 256
    v_skip_layer: int | None = None  # lego/drums/Family/Ignatius: 5
    act: Literal["relu", "leakyrelu"] = "relu"  # leakyrelu (0.2): lego
    num_heads: int = 1  # official: 1
    normalize_topk: bool = True
    chunk_rays: int = 4096  # rays per block of the fused path (bounds intermediates; fewer, larger ops)
    ckpt_rays: int = 4096  # with gradients: recompute blocks of this many rays in backward ...
    ckpt_min_rays: int = 8192  # ... when a call has more rays than this (0 disables checkpointing)


def perpendicular_distance(points: Tensor, rays_o: Tensor, rays_d: Tensor) -> Tensor:
    """Direct form ||(p - o) - d ((p - o).d) / (d.d + eps)||. points (M,3), rays (R,3) -> (R, M)."""
    v = points[None, :, :] - rays_o[:, None, :]
    t = (v * rays_d[:, None, :]).sum(-1, keepdim=True) / ((rays_d * rays_d).sum(-1)[:, None, None] + EPS)
    return (v - t * rays_d[:, None, :]).norm(dim=-1)


def _expanded_sq_distance(points: Tensor, rays_o: Tensor, rays_d: Tensor) -> Tensor:
    """|v|^2 - (v.d)^2 / (d.d + eps) as matrix products (fast, loses precision for far points)."""
    pd = rays_d @ points.T  # (R, M)
    od = (rays_o * rays_d).sum(-1, keepdim=True)
    dd = (rays_d * rays_d).sum(-1, keepdim=True) + EPS
    vv = (points * points).sum(-1)[None] - 2 * rays_o @ points.T + (rays_o * rays_o).sum(-1, keepdim=True)
    return (vv - (pd - od) ** 2 / dd).clamp_min(0)


# (rays, points) per distance tile: CPU tiles fit the cache (measured fastest on 1-2 threads); on CUDA
# larger tiles fill the GPU (about 128 MB per (rays x points) fp32 matrix of the expanded form)
TOPK_CHUNKS = {"cpu": (256, 8192), "cuda": (2048, 16384)}


def topk_chunks(device: torch.device | str, ray_chunk: int | None = None, point_chunk: int | None = None):
    """(ray_chunk, point_chunk) for `device`: the given values, else the device's default tile."""
    dr, dp = TOPK_CHUNKS.get(torch.device(device).type, TOPK_CHUNKS["cuda"])
    return ray_chunk or dr, point_chunk or dp


@contextmanager
def full_fp32_matmul():
    """Matmuls in IEEE fp32 inside the block, whatever the global policy: no TF32 on CUDA
    (`train.tf32`, `allow_tf32`) and no bf16 on CPUs with AMX (`set_float32_matmul_precision("medium")`
    lets oneDNN use bf16). The previous settings are restored on exit."""
    cuda, mkldnn = torch.backends.cuda.matmul, getattr(torch.backends.mkldnn, "matmul", None)
    if mkldnn is None or not hasattr(cuda, "fp32_precision"):  # older torch: the global setting only
        prev = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")
        try:
            yield
        finally:
            torch.set_float32_matmul_precision(prev)
        return
    saved = (cuda.fp32_precision, mkldnn.fp32_precision)
    cuda.fp32_precision = mkldnn.fp32_precision = "ieee"
    try:
        yield
    finally:
        cuda.fp32_precision, mkldnn.fp32_precision = saved


@torch.no_grad()
def topk_points_per_ray(
    points: Tensor,
    rays_o: Tensor,
    rays_d: Tensor,
    k: int,
    *,
    ray_chunk: int | None = None,
    point_chunk: int | None = None,
    form: str = "expanded",
    margin: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Indices (R, K) and distances (R, K) of the K points nearest to each ray, ascending distance.

    Points are processed in tiles with a running top-k (each tile's candidates merged with the current
    best), rays in chunks; peak extra memory ~ ray_chunk x point_chunk x 3 floats. Chunks default to
    the device's tile (`TOPK_CHUNKS`: CPU 256 x 8192, CUDA 2048 x 16384). Distances are always computed
    in full fp32: autocast is disabled and matmuls run in IEEE fp32 (no TF32 / bf16, `full_fp32_matmul`).

    form "direct": the spec 2.6 / official distance on every (ray, point) pair. form "expanded":
    |v|^2 - (v.d)^2 / (d.d + eps) as matrix products (about 4x faster) to keep the best K + margin
    candidates (margin default K), which are then re-ranked with the direct form. The expanded form
    loses precision by cancellation for far points, so near-ties at the K-th place can swap; the margin
    absorbs that: the selected set equals the direct form's unless more than `margin` points crowd into
    the rounding band (about |p - o|^2 x 1e-7) of the K-th distance (tests check agreement on
    realistically scaled scenes).
    """
    if points.shape[0] < k:
        raise ValueError(f"need at least k={k} points, got {points.shape[0]}")
    if form not in ("direct", "expanded"):
        raise ValueError(f"form must be 'direct' or 'expanded', got {form!r}")
    kc = k if form == "direct" else min(points.shape[0], k + (k if margin is None else margin))
    ray_chunk, point_chunk = topk_chunks(points.device, ray_chunk, point_chunk)
    with torch.autocast(points.device.type, enabled=False), full_fp32_matmul():  # distances in full fp32
        return _topk_tiled(
            points.float(), rays_o.float(), rays_d.float(), k, kc, ray_chunk, point_chunk, form
        )


def _topk_tiled(points, rays_o, rays_d, k, kc, ray_chunk, point_chunk, form):
    out_i, out_d = [], []
    for r0 in range(0, rays_o.shape[0], ray_chunk):
        o, d = rays_o[r0 : r0 + ray_chunk], rays_d[r0 : r0 + ray_chunk]
        best_d = torch.full((o.shape[0], kc), float("inf"), device=o.device, dtype=points.dtype)
        best_i = torch.zeros((o.shape[0], kc), device=o.device, dtype=torch.long)
        for p0 in range(0, points.shape[0], point_chunk):
            p = points[p0 : p0 + point_chunk]
            dist = perpendicular_distance(p, o, d) if form == "direct" else _expanded_sq_distance(p, o, d)
            td, ti = torch.topk(dist, min(kc, p.shape[0]), dim=1, largest=False)
            cand_d = torch.cat([best_d, td], 1)
            cand_i = torch.cat([best_i, ti + p0], 1)
            best_d, sel = torch.topk(cand_d, kc, dim=1, largest=False)
            best_i = torch.gather(cand_i, 1, sel)
        if form == "expanded":  # exact (direct-form) distances of the candidates, keep the K best
            v = points[best_i] - o[:, None]
            t = (v * d[:, None]).sum(-1, keepdim=True) / ((d * d).sum(-1)[:, None, None] + EPS)
            best_d = (v - t * d[:, None]).norm(dim=-1)
        best_d, order = torch.topk(best_d, k, dim=1, largest=False, sorted=True)
        out_d.append(best_d)
        out_i.append(torch.gather(best_i, 1, order))
    return torch.cat(out_i), torch.cat(out_d)


def posenc(x: Tensor, num_freqs: int) -> Tensor:
    """PAPR's encoding (spec 2.6): per coordinate [x, sin(2^0 x), cos(2^0 x), ..., cos(2^(L-1) x)],
    coordinates one after another (common.encoding, coordinate-major layout)."""
    return positional_encoding(x, num_freqs, layout="coordinate_major")


class LayerNormUnbiased(nn.Module):
    """a (x - mean) / (std_unbiased + 1e-6) + b, the official custom LayerNorm (keys a_2, b_2)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.a_2 = nn.Parameter(torch.ones(dim))
        self.b_2 = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.a_2 * (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + 1e-6) + self.b_2


class SkipMLP(nn.Module):
    """Linear stack stored as `model` = [Identity, Linear, act, ..., Linear] (official key indices)."""

    def __init__(self, d_in: int, hidden: int, d_out: int, n_layers: int, act: str, skip: int | None) -> None:
        super().__init__()
        self.skip = skip
        mods: list[nn.Module] = [nn.Identity()]
        for i in range(n_layers):
            fan_in = d_in if i == 0 else hidden
            if skip is not None and i == skip:
                fan_in = hidden + d_in
            lin = nn.Linear(fan_in, d_out if i == n_layers - 1 else hidden)
            nn.init.xavier_uniform_(lin.weight)
            mods.append(lin)
            if i < n_layers - 1:
                mods.append(nn.LeakyReLU(0.2) if act == "leakyrelu" else nn.ReLU())
        self.model = nn.ModuleList(mods)

    def forward(self, x: Tensor) -> Tensor:
        inp, h, li = x, x, 0
        for m in self.model:
            if isinstance(m, nn.Linear):
                if self.skip is not None and li == self.skip:
                    h = torch.cat([h, inp], -1)
                li += 1
            h = m(h)
        return h


class FeedForward(nn.Module):
    """outnorm(mlp(innorm(x))) for keys/queries; plain mlp for values (no norms)."""

    def __init__(
        self, d_in: int, d_out: int, cfg: RMSAConfig, n_layers: int, norm: bool, skip: int | None
    ) -> None:
        super().__init__()
        self.mlp = SkipMLP(d_in, cfg.hidden, d_out, n_layers, cfg.act, skip)
        self.innorm = LayerNormUnbiased(d_in) if norm else None
        self.outnorm = LayerNormUnbiased(d_out) if norm else None

    def forward(self, x: Tensor) -> Tensor:
        if self.innorm is not None:
            x = self.innorm(x)
        x = self.mlp(x)
        return self.outnorm(x) if self.outnorm is not None else x


class Embeddings(nn.Module):
    """Key (3 vectors), query (ray direction) and value (2 vectors + point features) embeddings."""

    def __init__(self, cfg: RMSAConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d_k = 3 * 3 * (1 + 2 * cfg.num_freqs_k)
        d_q = 3 * (1 + 2 * cfg.num_freqs_q)
        d_v = 2 * 3 * (1 + 2 * cfg.num_freqs_v) + cfg.d_feat
        self.dims = (d_k, d_q, d_v)
        self.embed_k = FeedForward(d_k, cfg.d_model, cfg, cfg.kq_layers, True, None)
        self.embed_q = FeedForward(d_q, cfg.d_model, cfg, cfg.kq_layers, True, None)
        self.embed_v = FeedForward(d_v, cfg.d_value, cfg, cfg.v_layers, False, cfg.v_skip_layer)


def key_query_value_raw(pts: Tensor, rays_o: Tensor, rays_d: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Raw geometric features. pts (R,K,3) -> p (detached), along-ray proj, perpendicular D, unit dirs."""
    d = rays_d / rays_d.norm(dim=-1, keepdim=True)
    v = pts - rays_o[:, None]
    proj = d[:, None] * (v * d[:, None]).sum(-1, keepdim=True) / ((d * d).sum(-1)[:, None, None] + EPS)
    return proj, v - proj, d


def attend(
    scores: Tensor, values: Tensor, bkg_score: float, normalize_topk: bool = True
) -> tuple[Tensor, Tensor, Tensor]:
    """Softmax over K scores + a background token; returns features (R, [H,] Dv), a_bkg (R, [H,] 1), weights.

    scores (R, H, K), values (R, H, K, Dv/H). Foreground weights renormalised over the K points if asked.
    """
    bkg = torch.full_like(scores[..., :1], bkg_score)
    a = torch.softmax(torch.cat([scores, bkg], -1), -1)
    fg, a_bkg = a[..., :-1], a[..., -1:]
    if normalize_topk:
        fg = fg / fg.sum(-1, keepdim=True).clamp_min(1e-12)
    feat = (fg[..., None] * values).sum(-2)
    return feat, a_bkg, fg


class AttentionLayer(nn.Module):
    """W_k, W_q (Linear d_model -> d_model, Xavier) and ReLU(q.k / sqrt(d_head)) scores per head."""

    def __init__(self, cfg: RMSAConfig) -> None:
        super().__init__()
        if cfg.d_model % cfg.num_heads or cfg.d_value % cfg.num_heads:
            raise ValueError("d_model and d_value must be divisible by num_heads")
        self.h = cfg.num_heads
        self.w_k = nn.Linear(cfg.d_model, cfg.d_model)
        self.w_q = nn.Linear(cfg.d_model, cfg.d_model)
        nn.init.xavier_uniform_(self.w_k.weight)
        nn.init.xavier_uniform_(self.w_q.weight)

    def forward(self, q: Tensor, k: Tensor) -> Tensor:
        """q (R, D), k (R, K, D) -> scores (R, H, K)."""
        r, kk, dm = k.shape
        dh = dm // self.h
        qh = self.w_q(q).view(r, self.h, 1, dh)
        kh = self.w_k(k).view(r, kk, self.h, dh).transpose(1, 2)
        return torch.relu((qh * kh).sum(-1) / math.sqrt(dh))


def _act_(x: Tensor, act: str) -> Tensor:
    """In-place activation (safe for autograd: ReLU / LeakyReLU(0.2) backward only needs the output)."""
    return torch.nn.functional.leaky_relu_(x, 0.2) if act == "leakyrelu" else torch.relu_(x)


def _mlp_fast(mlp: SkipMLP, x: Tensor, act: str) -> Tensor:
    """SkipMLP forward with in-place activations; x (N, D_in) 2-D."""
    lins = [m for m in mlp.model if isinstance(m, nn.Linear)]
    h = x
    for i, lin in enumerate(lins):
        if mlp.skip is not None and i == mlp.skip:
            h = torch.cat([h, x], -1)
        h = torch.nn.functional.linear(h, lin.weight, lin.bias)
        if i < len(lins) - 1:
            h = _act_(h, act)
    return h


def _unbiased_norm(x: Tensor) -> tuple[Tensor, Tensor]:
    """mean and 1 / (std_unbiased + 1e-6) over the last dim (keepdim). The centred norm is ~20x faster
    than Tensor.std on CPU (which uses a Welford reduction) and as accurate."""
    mu = x.mean(-1, keepdim=True)
    sd = torch.linalg.vector_norm(x - mu, dim=-1, keepdim=True) / math.sqrt(x.shape[-1] - 1)
    return mu, 1.0 / (sd + 1e-6)


class ProximityAttention(nn.Module):
    """Embeddings + attention layer; `forward` returns ray features (R, d_value) and a_bkg (R, 1).

    `forward` is a fused, blocked evaluation of exactly the function of `forward_reference` (the
    straightforward form, kept for tests): rays are processed in blocks of `chunk_rays` (bounded
    intermediates; small blocks are cache-friendlier on one thread but multiply OpenMP barriers, which
    stall on a shared CPU with 2 threads, so the default is large); the three key/value positional encodings share one sin/cos pass; the
    key output LayerNorm and W_k are folded into the query side (score = q'.(W_k LN(y) + b_k) =
    ((y - mu) . u) / (std + eps) + c with u = a * W_k^T q', c = q'.(W_k b + b_k)), so neither the
    normalised keys nor W_k k are materialised (W_k costs one GEMV per ray instead of a GEMM per
    ray x point); activations are in place. With gradients and more than `ckpt_min_rays` rays, blocks of
    `ckpt_rays` rays are checkpointed (recomputed in backward) so training memory is bounded.
    """

    def __init__(self, cfg: RMSAConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = Embeddings(cfg)
        self.attention_layer = AttentionLayer(cfg)

    def forward(
        self, pts: Tensor, feats: Tensor, influ: Tensor, rays_o: Tensor, rays_d: Tensor, bkg_score: float
    ) -> tuple[Tensor, Tensor]:
        """pts (R,K,3), feats (R,K,F), influ (R,K) of the selected points; rays (R,3)."""
        c = self.cfg
        r = pts.shape[0]
        if torch.is_grad_enabled() and c.ckpt_min_rays > 0 and r > c.ckpt_min_rays:
            from torch.utils.checkpoint import checkpoint

            parts = [
                checkpoint(
                    self._blocks,
                    *(t[i : i + c.ckpt_rays] for t in (pts, feats, influ, rays_o, rays_d)),
                    bkg_score,
                    use_reentrant=False,
                )
                for i in range(0, r, c.ckpt_rays)
            ]
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        return self._blocks(pts, feats, influ, rays_o, rays_d, bkg_score)

    def _blocks(self, pts, feats, influ, rays_o, rays_d, bkg_score):
        n = max(1, self.cfg.chunk_rays)
        if pts.shape[0] <= n:
            return self._fused(pts, feats, influ, rays_o, rays_d, bkg_score)
        parts = [
            self._fused(
                pts[i : i + n],
                feats[i : i + n],
                influ[i : i + n],
                rays_o[i : i + n],
                rays_d[i : i + n],
                bkg_score,
            )
            for i in range(0, pts.shape[0], n)
        ]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def _fused(self, pts, feats, influ, rays_o, rays_d, bkg_score):
        c = self.cfg
        r, kk, _ = pts.shape
        n = r * kk
        proj, perp, d = key_query_value_raw(pts, rays_o, rays_d)
        geo = torch.stack([pts.detach(), proj, perp], -2)  # (R, K, 3 vectors, 3)
        if c.num_freqs_v == c.num_freqs_k:
            pe = posenc(geo, c.num_freqs_k)  # (R, K, 3, 3(1+2L)); [1:] are the value encodings
            key, val_pe = pe.reshape(n, -1), pe[:, :, 1:].reshape(n, -1)
        else:
            key = posenc(geo, c.num_freqs_k).reshape(n, -1)
            val_pe = posenc(geo[:, :, 1:], c.num_freqs_v).reshape(n, -1)
        emb = self.embed
        # key: innorm -> MLP -> (outnorm and W_k folded into the query side)
        ek = emb.embed_k
        mu, inv = _unbiased_norm(key)
        y = _mlp_fast(ek.mlp, (key - mu) * inv * ek.innorm.a_2 + ek.innorm.b_2, c.act)  # (N, D)
        mu_y, inv_y = _unbiased_norm(y)
        # query (one per ray)
        eq = emb.embed_q
        qx = posenc(d, c.num_freqs_q)
        mq, iq = _unbiased_norm(qx)
        q = _mlp_fast(eq.mlp, (qx - mq) * iq * eq.innorm.a_2 + eq.innorm.b_2, c.act)
        mq, iq = _unbiased_norm(q)
        q = (q - mq) * iq * eq.outnorm.a_2 + eq.outnorm.b_2
        al = self.attention_layer
        h, dm = c.num_heads, c.d_model
        dh = dm // h
        qp = torch.nn.functional.linear(q, al.w_q.weight, al.w_q.bias).view(r, h, dh)  # (R, H, dh)
        wk = al.w_k.weight.view(h, dh, dm)
        u = torch.einsum("rhd,hdj->rhj", qp, wk)  # (R, H, D) = W_k^T q' per head
        cst = (u * ek.outnorm.b_2).sum(-1) + (qp * al.w_k.bias.view(h, dh)).sum(-1)  # (R, H)
        u = u * ek.outnorm.a_2
        yu = torch.bmm(y.view(r, kk, dm), u.transpose(1, 2))  # (R, K, H)
        yu = (yu - mu_y.view(r, kk, 1) * u.sum(-1)[:, None, :]) * inv_y.view(r, kk, 1) + cst[:, None, :]
        scores = torch.relu(yu.transpose(1, 2) / math.sqrt(dh)) * influ[:, None, :]  # (R, H, K)
        # values
        v = _mlp_fast(emb.embed_v.mlp, torch.cat([val_pe, feats.reshape(n, -1)], -1), c.act)
        dv = v.shape[-1]
        v_h = v.view(r, kk, h, dv // h).transpose(1, 2)
        feat, a_bkg, _ = attend(scores, v_h, bkg_score, c.normalize_topk)
        return feat.reshape(r, dv), a_bkg.mean(1)

    def forward_reference(
        self, pts: Tensor, feats: Tensor, influ: Tensor, rays_o: Tensor, rays_d: Tensor, bkg_score: float
    ) -> tuple[Tensor, Tensor]:
        """The straightforward (official-form) evaluation, unblocked; `forward` must match it."""
        c = self.cfg
        proj, perp, d = key_query_value_raw(pts, rays_o, rays_d)
        key = torch.cat(
            [posenc(pts.detach(), c.num_freqs_k), posenc(proj, c.num_freqs_k), posenc(perp, c.num_freqs_k)],
            -1,
        )
        val = torch.cat([posenc(proj, c.num_freqs_v), posenc(perp, c.num_freqs_v), feats], -1)
        k_emb = self.embed.embed_k(key)
        q_emb = self.embed.embed_q(posenc(d, c.num_freqs_q))
        v_emb = self.embed.embed_v(val)  # (R, K, Dv)
        scores = self.attention_layer(q_emb, k_emb) * influ[:, None, :]
        r, kk, dv = v_emb.shape
        v_h = v_emb.view(r, kk, c.num_heads, dv // c.num_heads).transpose(1, 2)
        feat, a_bkg, _ = attend(scores, v_h, bkg_score, c.normalize_topk)
        return feat.reshape(r, dv), a_bkg.mean(1)
