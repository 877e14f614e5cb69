"""The network: VGG-19 as a pure Flax module, its layer table and preprocessing, and how its 3x3
convolutions are computed (direct, Winograd). No I/O."""
