"""Deterministic procedural data (ray-cast textured primitives) in the on-disk layouts of the three
papers' datasets; the project's embedded default data for demos and tests."""

from common.synthetic.multiview import write_nerf_synthetic, write_nmr_dataset, write_nsvf, write_srn_dataset
from common.synthetic.nss import DEFAULT_METHODS, Distortion, write_nss_bank, write_nss_renders
from common.synthetic.rgbx import CLASS_NAMES, write_rgbx_scenes

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_METHODS",
    "Distortion",
    "write_nerf_synthetic",
    "write_nmr_dataset",
    "write_nss_bank",
    "write_nss_renders",
    "write_nsvf",
    "write_rgbx_scenes",
    "write_srn_dataset",
]
