"""SMCL object-level data: NMR/DVR and SRN loaders, Mir-180 triplets."""

from smcl.object.data.mir180 import Mir180Dataset, build_mir180, build_triplet_index, triplet_views
from smcl.object.data.nmr import (
    NMRDataset,
    NMRDatasetConfig,
    pixelnerf_rays,
    pixelnerf_rays_at,
    read_cameras,
    view_files,
    write_nmr_object,
)
from smcl.object.data.srn import SRNDataset, SRNDatasetConfig

__all__ = [
    "Mir180Dataset", "NMRDataset", "NMRDatasetConfig", "SRNDataset", "SRNDatasetConfig",
    "build_mir180", "build_triplet_index", "pixelnerf_rays", "pixelnerf_rays_at", "read_cameras", "view_files",
    "triplet_views", "write_nmr_object",
]  # fmt: skip
