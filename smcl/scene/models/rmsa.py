"""R-MSA: PAPR-style proximity attention (spec smcl.md 2.6).

For each ray the K points with the smallest perpendicular distance to the ray are selected with a
tiled running top-k (memory bounded by ray_chunk x point_chunk, never rays x points x 3 at full size);
keys (point, along-ray and perpendicular offsets), query (ray direction) and values (offsets + point
features) are embedded with positional encodings and MLPs; scaled dot-product scores (ReLU) times the
influence scores compete with a constant background token in a softmax.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

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
    act: str = "relu"  # relu | leakyrelu (0.2, lego)
    num_heads: int = 1  # official: 1
    normalize_topk: bool = True


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


@torch.no_grad()
def topk_points_per_ray(
    points: Tensor,
    rays_o: Tensor,
    rays_d: Tensor,
    k: int,
    *,
    ray_chunk: int = 1024,
    point_chunk: int = 4096,
    form: str = "direct",
) -> tuple[Tensor, Tensor]:
    """Indices (R, K) and distances (R, K) of the K points nearest to each ray, ascending distance.

    Points are processed in tiles with a running top-k (each tile's candidates merged with the current
    best), rays in chunks; peak extra memory ~ ray_chunk x point_chunk x 3 floats.
    """
    if points.shape[0] < k:
        raise ValueError(f"need at least k={k} points, got {points.shape[0]}")
    if form not in ("direct", "expanded"):
        raise ValueError(f"form must be 'direct' or 'expanded', got {form!r}")
    out_i, out_d = [], []
    for r0 in range(0, rays_o.shape[0], ray_chunk):
        o, d = rays_o[r0 : r0 + ray_chunk], rays_d[r0 : r0 + ray_chunk]
        best_d = torch.full((o.shape[0], k), float("inf"), device=o.device, dtype=points.dtype)
        best_i = torch.zeros((o.shape[0], k), device=o.device, dtype=torch.long)
        for p0 in range(0, points.shape[0], point_chunk):
            p = points[p0 : p0 + point_chunk]
            dist = perpendicular_distance(p, o, d) if form == "direct" else _expanded_sq_distance(p, o, d)
            kk = min(k, p.shape[0])
            td, ti = torch.topk(dist, kk, dim=1, largest=False)
            cand_d = torch.cat([best_d, td], 1)
            cand_i = torch.cat([best_i, ti + p0], 1)
            best_d, sel = torch.topk(cand_d, k, dim=1, largest=False)
            best_i = torch.gather(cand_i, 1, sel)
        if form == "expanded":  # report exact (direct-form) distances of the selected points
            sel = points[best_i]
            v = sel - o[:, None]
            t = (v * d[:, None]).sum(-1, keepdim=True) / ((d * d).sum(-1)[:, None, None] + EPS)
            best_d = (v - t * d[:, None]).norm(dim=-1)
        order = best_d.argsort(dim=1)
        out_d.append(torch.gather(best_d, 1, order))
        out_i.append(torch.gather(best_i, 1, order))
    return torch.cat(out_i), torch.cat(out_d)


def posenc(x: Tensor, num_freqs: int) -> Tensor:
    """Per coordinate [x, sin(2^0 x), cos(2^0 x), ..., sin(2^(L-1) x), cos(2^(L-1) x)], coord-major."""
    freqs = 2.0 ** torch.arange(num_freqs, device=x.device, dtype=x.dtype)
    xf = x[..., None] * freqs  # (..., 3, L)
    sc = torch.stack([torch.sin(xf), torch.cos(xf)], -1).flatten(-2)  # (..., 3, 2L)
    return torch.cat([x[..., None], sc], -1).flatten(-2)


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


class ProximityAttention(nn.Module):
    """Embeddings + attention layer; `forward` returns ray features (R, d_value) and a_bkg (R, 1)."""

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
