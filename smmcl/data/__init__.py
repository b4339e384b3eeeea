"""RGB-X datasets (CMX layouts)."""

from smmcl.data.rgbx import RGBXDataset, RGBXDatasetConfig, parse_list

__all__ = ["RGBXDataset", "RGBXDatasetConfig", "parse_list"]
