"""Evaluation metrics: image quality (PSNR/SSIM/LPIPS), segmentation, rank/linear correlation.

Each submodule holds functional kernels (``common.metrics.image.psnr``, ...) and their stateful
``torchmetrics.Metric`` classes, re-exported here. Building an ``LPIPS`` loads its network (it needs
fetched weights); importing this package builds nothing. The metric table (higher_is_better, input
range, protocol) is in docs/evaluation.md.
"""

from common.metrics.base import MeanOfItems, check_range
from common.metrics.correlation import KRCC, PLCC, SRCC
from common.metrics.image import PSNR, SSIM, MaskedPSNR, MaskedSSIM
from common.metrics.lpips import LPIPS
from common.metrics.segmentation import SegmentationMetrics

__all__ = [
    "PSNR",
    "SSIM",
    "MaskedPSNR",
    "MaskedSSIM",
    "LPIPS",
    "SegmentationMetrics",
    "SRCC",
    "PLCC",
    "KRCC",
    "MeanOfItems",
    "check_range",
]
