"""NSS training data: render folders and the self-supervised pair sampler."""

from nvs_sqa.data.pairs import NSSPairSampler, PairConfig, load_renders

__all__ = ["NSSPairSampler", "PairConfig", "load_renders"]
