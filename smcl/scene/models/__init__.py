"""Scene-level models: point GCL encoder, R-MSA proximity attention, SmallUNet, the per-scene model."""
