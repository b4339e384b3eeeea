"""Evaluation metrics: image quality (PSNR/SSIM/LPIPS), segmentation, rank/linear correlation.

Submodules are imported explicitly (``from common.metrics.image import psnr``) so that importing
one metric never builds another (LPIPS needs fetched weights).
"""
