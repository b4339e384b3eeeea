"""Plain data the command-line parsers need (choices, defaults): importing it costs no torch, cv2 or plots."""

from __future__ import annotations

#: nerfstudio captures of the unlabelled NSS training set (spec nvs_sqa.md §3.1)
SCENES = (
    "aspen",
    "bww_entrance",
    "campanile",
    "desolation",
    "dozer",
    "Egypt",
    "floating-tree",
    "Giannini-Hall",
    "kitchen",
    "library",
    "person",
    "plane",
    "poster",
    "redwoods2",
    "sculpture",
    "stump",
    "vegetation",
)
#: method name in the renders folder -> (ns-train method, extra arguments)
METHODS: dict[str, tuple[str, tuple[str, ...]]] = {
    "splatfacto": ("splatfacto", ()),
    "nerfacto": ("nerfacto", ()),
    "tensorf": ("tensorf", ()),
    "instant-ngp": ("instant-ngp", ()),
    "kplanes-20": ("kplanes", ("--pipeline.model.near-plane", "0", "--pipeline.model.far-plane", "20")),
    "kplanes-100": ("kplanes", ("--pipeline.model.near-plane", "0", "--pipeline.model.far-plane", "100")),
    "kplanes-1000": ("kplanes", ("--pipeline.model.near-plane", "0", "--pipeline.model.far-plane", "1000")),
    "nerfacto-huge": ("nerfacto-huge", ()),
}
#: stress artefact -> (parameter values in order of increasing severity, unit); nvs_sqa.stress applies them
ARTEFACT_LEVELS: dict[str, tuple[tuple[float, ...], str]] = {
    "blur": ((0.1, 0.2, 0.4, 0.8, 1.6), "sigma, % of width"),
    "noise": ((2, 4, 8, 16, 32), "std, 8-bit levels"),
    "jpeg": ((50, 30, 20, 10, 5), "JPEG quality"),
    "floaters": ((1, 2, 4, 8, 16), "blobs"),
    "black_holes": ((0.5, 1, 2, 4, 8), "% of area"),
    "ghosting": ((0.1, 0.2, 0.3, 0.4, 0.5), "blend weight"),
    "colour_shift": ((0.05, 0.1, 0.2, 0.3, 0.45), "R/B gain offset"),
    "flicker": ((0.02, 0.05, 0.1, 0.2, 0.3), "gain amplitude"),
    "frozen": ((0.1, 0.25, 0.5, 0.75, 0.9), "fraction dropped"),
}
