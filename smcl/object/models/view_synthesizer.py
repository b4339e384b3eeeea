"""pixelNeRF-style view synthesizer with a global latent (SMCL `SMCLNet`, spec smcl.md 2.4, 3.2, 7.2).

Re-implemented from the description of pixelNeRF (sxyu/pixel-nerf@91a044b) as modified by SMCL: the
source image goes through the dual-domain encoder and a Linear to one 128-d latent per source view; the
latent conditions a ResnetFC NeRF MLP. The latent's contribution (lin_z) is computed once per object and
broadcast over samples instead of being concatenated to every sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smcl.object.models.ffc_encoder import DualDomainEncoder, DualDomainEncoderConfig


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


class PositionalEncoding(nn.Module):
    """[x, sin(f0 x), cos(f0 x), sin(f1 x), ...], f_k = factor * 2^k, frequency-major; (..., 3) -> (..., 39)."""

    def __init__(self, num_freqs: int = 6, freq_factor: float = 1.5, d_in: int = 3) -> None:
        super().__init__()
        freqs = freq_factor * 2.0 ** torch.arange(num_freqs, dtype=torch.float32)
        self.register_buffer("_freqs", freqs.repeat_interleave(2).view(1, -1, 1))
        phases = torch.zeros(2 * num_freqs)
        phases[1::2] = math.pi * 0.5
        self.register_buffer("_phases", phases.view(1, -1, 1))
        self.d_out = d_in * (1 + 2 * num_freqs)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        flat = x.reshape(-1, 1, shape[-1])
        emb = torch.sin(flat * self._freqs + self._phases).reshape(flat.shape[0], -1)
        return torch.cat([x, emb.view(*shape[:-1], -1)], dim=-1)


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
    """pixelNeRF ResnetFC: lin_in, latent injected before blocks < combine_layer, mean over sources there."""

    def __init__(self, d_in: int, d_latent: int, d_hidden: int, n_blocks: int, combine_layer: int) -> None:
        super().__init__()
        self.lin_in = nn.Linear(d_in, d_hidden)
        self.blocks = nn.ModuleList([ResnetBlockFC(d_hidden) for _ in range(n_blocks)])
        self.lin_z = nn.ModuleList(
            [nn.Linear(d_latent, d_hidden) for _ in range(min(combine_layer, n_blocks))]
        )
        self.lin_out = nn.Linear(d_hidden, 4)
        self.combine_layer = combine_layer
        for lin in [self.lin_in, self.lin_out, *self.lin_z]:
            nn.init.kaiming_normal_(lin.weight, a=0, mode="fan_in")
            nn.init.zeros_(lin.bias)

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        """x (SB, NS, P, d_in), z (SB, NS, d_latent) -> (SB, P, 4) raw outputs."""
        h = self.lin_in(x)
        for i, block in enumerate(self.blocks):
            if i == self.combine_layer:
                h = h.mean(dim=1, keepdim=True)
            if i < len(self.lin_z):
                h = h + self.lin_z[i](z).unsqueeze(2)  # once per object and source, broadcast over P
            h = block(h)
        if self.combine_layer >= len(self.blocks):
            h = h.mean(dim=1, keepdim=True)
        return self.lin_out(F.relu(h)).squeeze(1)


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
        if images.shape[-1] != self.image_size or images.shape[-2] != self.image_size:
            raise ValueError(
                f"encoder expects {self.image_size}x{self.image_size} images, got {tuple(images.shape)}"
            )
        x = images * 2 - 1 if self.signed else images
        return self.fc(self.model(x).flatten(1))


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

    # ---- conditioning and field -------------------------------------------------------------------
    def encode(self, src_images: Tensor, src_poses: Tensor) -> Conditioning:
        """src_images (SB, NS, 3, S, S) in [0,1]; src_poses (SB, NS, 4, 4) camera->world (OpenGL axes)."""
        sb, ns = src_images.shape[:2]
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

    @torch.no_grad()
    def render_chunked(self, cond: Conditioning, rays: Tensor) -> dict[str, Tensor]:
        """Render (SB, N, 8) rays in chunks so at most `chunk_points` samples are alive per MLP call."""
        per_ray = self.cfg.n_coarse + self.cfg.n_fine + self.cfg.n_fine_depth
        step = max(1, self.cfg.chunk_points // (per_ray * rays.shape[0]))
        parts = [self.render_rays(cond, rays[:, i : i + step]) for i in range(0, rays.shape[1], step)]
        return {k: torch.cat([p[k] for p in parts], dim=1) for k in parts[0]}

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """batch: src_images (SB,NS,3,S,S), src_poses (SB,NS,4,4), rays (SB,N,8), rgb (SB,N,3) in [0,1]."""
        cond = self.encode(batch["src_images"], batch["src_poses"])
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


# Official SMCLNet state_dict (spec 7.2) uses the same module names; the encoder's SE keys are absent there.
OFFICIAL_SYNTH_ABSENT_PREFIXES = tuple(
    "encoder.model." + p for p in ("se_cnn.", "se_ffc_l.", "se_ffc_g.", "se_fuse_f.")
)
# (regex, replacement) applied in order to official keys; names already match except wrappers.
OFFICIAL_SYNTH_RENAMES: list[tuple[str, str]] = [(r"^module\.", ""), (r"^net\.", "")]


def remap_official_smcl_net(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Official `SMCL_latest` -> our ViewSynthesizer keys (pure, no I/O)."""
    import re

    out = {}
    for k, v in state_dict.items():
        for pat, rep in OFFICIAL_SYNTH_RENAMES:
            k = re.sub(pat, rep, k)
        out[k] = v.detach().cpu()
    return out


def build_view_synthesizer(cfg: ViewSynthesizerConfig = ViewSynthesizerConfig()) -> ViewSynthesizer:
    return ViewSynthesizer(cfg)
