"""SMCL scene level: point GCL pretraining and the R-MSA (proximity attention) point renderer."""
