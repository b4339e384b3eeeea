"""Point module: graph contrastive learning over local point neighbourhoods (spec smcl.md 2.5, 3.3).

Plain PyTorch (dense per-block adjacency, batch by stacking blocks). Blocks: spatial k-NN
neighbourhoods of every point (default; yields one feature per point, aligned with the point order) or
the official consecutive 20-point file-order chunks (`blocks="file_chunks"`, with the official
strictly lower-triangular edges under `edge_mode="compat_lower_triangular"`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class PointGCLConfig:
    hidden: int = 32
    num_layers: int = 2
    block_size: int = 20
    blocks: Literal["knn", "file_chunks"] = "knn"  # file_chunks: official
    edge_mode: Literal["symmetric", "compat_lower_triangular"] = "symmetric"
    aug_p: float = 0.1
    tau: float = 0.2
    # official: the GraphCL Encoder also embeds the unaugmented graph (unused by the loss): BatchNorm's
    # running statistics are updated three times per step (x, identity view, augmented view), not twice
    compat_three_passes: bool = False


def make_blocks(points: Tensor, cfg: PointGCLConfig, chunk: int = 2048) -> Tensor:
    """Index tensor (B, S) of blocks. knn: row i = point i and its S-1 nearest neighbours (centre first)."""
    n, s = points.shape[0], cfg.block_size
    if n < 2:
        raise ValueError(f"need at least 2 points to build graphs, got {n}")
    s = min(s, n)
    if cfg.blocks == "file_chunks":
        idx = [torch.arange(i, min(i + s, n)) for i in range(0, n - n % s, s)]
        if n % s:  # official: a last chunk with the remaining points, padded from the end (duplicates)
            idx.append(torch.arange(n - s, n))
        return torch.stack(idx)
    if cfg.blocks != "knn":
        raise ValueError(f"blocks must be 'knn' or 'file_chunks', got {cfg.blocks!r}")
    out = []
    for i in range(0, n, chunk):
        d = torch.cdist(points[i : i + chunk], points)
        d[torch.arange(d.shape[0]), torch.arange(i, i + d.shape[0])] = -1.0  # centre first
        out.append(d.topk(s, dim=1, largest=False).indices)
    return torch.cat(out)


def block_adjacency(xyz: Tensor, cfg: PointGCLConfig) -> Tensor:
    """(B, S, S) adjacency A[b, v, u] = 1 if u sends to v: complete graph minus self loops."""
    b, s, _ = xyz.shape
    a = torch.ones(s, s, device=xyz.device) - torch.eye(s, device=xyz.device)
    if cfg.edge_mode == "compat_lower_triangular":
        a = torch.tril(a, diagonal=-1)  # node v aggregates only from u < v
    elif cfg.edge_mode != "symmetric":
        raise ValueError(f"edge_mode must be 'symmetric' or 'compat_lower_triangular', got {cfg.edge_mode!r}")
    return a.expand(b, s, s).clone()


class GINLayer(nn.Module):
    """h' = MLP((1 + eps) h + sum_{u->v} h_u), eps = 0 buffer; MLP Linear-ReLU-Linear (key `nn`)."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.nn = nn.Sequential(nn.Linear(d_in, d_out), nn.ReLU(), nn.Linear(d_out, d_out))
        self.register_buffer("eps", torch.zeros(1))

    def forward(self, x: Tensor, adj: Tensor) -> Tensor:
        return self.nn((1 + self.eps) * x + adj @ x)


class GConv(nn.Module):
    """2 GIN layers (ReLU then BatchNorm after each); node z = concat of layers, graph g = concat sums."""

    def __init__(self, cfg: PointGCLConfig, d_in: int = 3) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [GINLayer(d_in if i == 0 else cfg.hidden, cfg.hidden) for i in range(cfg.num_layers)]
        )
        self.batch_norms = nn.ModuleList([nn.BatchNorm1d(cfg.hidden) for _ in range(cfg.num_layers)])
        d = cfg.hidden * cfg.num_layers
        self.project = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))

    def forward(self, x: Tensor, adj: Tensor, node_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (B, S, 3), adj (B, S, S) -> z (B, S, 64), g (B, 64)."""
        zs, h = [], x
        for layer, bn in zip(self.layers, self.batch_norms):
            h = torch.relu(layer(h, adj))
            h = bn(h.reshape(-1, h.shape[-1])).view_as(h)
            zs.append(h)
        z = torch.cat(zs, -1)
        return z, z.sum(1)


class PointGCL(nn.Module):
    """GraphCL wrapper: keys `encoder.layers...`, `encoder.batch_norms...`, `encoder.project...`."""

    def __init__(self, cfg: PointGCLConfig = PointGCLConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = GConv(cfg)

    def augment(self, x: Tensor, adj: Tensor) -> tuple[Tensor, Tensor]:
        """One of node dropping / feature masking / edge removing (p = aug_p), chosen per call."""
        p = self.cfg.aug_p
        choice = int(torch.randint(3, (1,)))
        if choice == 0:  # node dropping: remove edges touching dropped nodes, keep features
            keep = (torch.rand(x.shape[:2], device=x.device) >= p).float()
            adj = adj * keep[:, :, None] * keep[:, None, :]
        elif choice == 1:  # feature masking: zero whole feature dimensions
            x = x * (torch.rand(x.shape[-1], device=x.device) >= p).float()
        else:  # edge removing
            adj = adj * (torch.rand_like(adj) >= p).float()
        return x, adj

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """common.engine contract: batch["xyz"] (B, S, 3) blocks -> {"infonce": loss}."""
        return {"infonce": self.loss(batch["xyz"].float())}

    def loss(self, xyz: Tensor) -> Tensor:
        """Graph-level InfoNCE between identity view and one augmented view, symmetrised. xyz (B, S, 3)."""
        adj = block_adjacency(xyz, self.cfg)
        if self.cfg.compat_three_passes and self.training:
            with torch.no_grad():
                self.encoder(xyz, adj)
        _, g1 = self.encoder(xyz, adj)
        _, g2 = self.encoder(*self.augment(xyz, adj))
        return info_nce(self.encoder.project(g1), self.encoder.project(g2), self.cfg.tau)

    @torch.no_grad()
    def point_features(self, points: Tensor, chunk: int = 4096) -> Tensor:
        """(N, 64) features, row i for point i. knn: the centre node's embedding of block i;
        file_chunks: each point's node embedding in its chunk (fixed, aligned variant)."""
        was = self.training
        self.eval()
        blocks = make_blocks(points, self.cfg)
        feats = torch.zeros(points.shape[0], self.cfg.hidden * self.cfg.num_layers, device=points.device)
        for i in range(0, blocks.shape[0], chunk):
            b = blocks[i : i + chunk]
            xyz = points[b]
            z, _ = self.encoder(xyz, block_adjacency(xyz, self.cfg))
            if self.cfg.blocks == "knn":
                feats[b[:, 0]] = z[:, 0]
            else:
                feats[b.reshape(-1)] = z.reshape(-1, z.shape[-1])
        self.train(was)
        return feats


@torch.no_grad()
def compat_last_chunk_tiled_features(model: PointGCL, points: Tensor, n_out: int | None = None) -> Tensor:
    """The official initial point features (spec 2.5, defect): embed the file-order chunks of `points`,
    keep only the node embeddings of the LAST chunk (S x 64) and tile them, row r = z_last[r mod S]
    (n_out rows, default len(points)). Not aligned with the points; for reproducing the official runs."""
    import dataclasses

    cfg = dataclasses.replace(model.cfg, blocks="file_chunks")
    was = model.training
    model.eval()
    last = points[make_blocks(points, cfg)[-1]][None]
    z, _ = model.encoder(last, block_adjacency(last, cfg))
    model.train(was)
    n = points.shape[0] if n_out is None else n_out
    return z[0][torch.arange(n, device=points.device) % z.shape[1]]


def info_nce(a: Tensor, b: Tensor, tau: float) -> Tensor:
    """Symmetric InfoNCE: cosine / tau, positives on the diagonal, in-batch negatives."""
    sim = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / tau
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target))


def remap_official_point_gcl(state: dict) -> dict[str, Tensor]:
    """Official `encoder_<scene>.pth` (the GraphCL `Encoder` wrapper, spec 7.3) -> ours: identical key
    names. PyG versions without the GINConv `eps` buffer saved none: it is the constant 0 (eps is not
    trained), so a missing `encoder.layers.<i>.eps` is filled with zeros(1); nothing is dropped."""
    out = dict(state)
    layers = sorted({int(k.split(".")[2]) for k in out if k.startswith("encoder.layers.")})
    for i in layers:
        out.setdefault(f"encoder.layers.{i}.eps", torch.zeros(1))
    return out


def build_point_gcl(cfg: PointGCLConfig | None = None, **overrides) -> PointGCL:
    """The point GCL encoder (2 GIN layers, hidden 32, projection head). `overrides`: PointGCLConfig fields."""
    import dataclasses

    cfg = cfg or PointGCLConfig()
    return PointGCL(dataclasses.replace(cfg, **overrides) if overrides else cfg)
