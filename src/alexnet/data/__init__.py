"""Data for AlexNet: sources, the prepared store, the paper's transforms and the loader.

Modules (imported on demand): `images` (decode, rescale + centre crop), `sources` (resolve a
spec into splits), `prepare` (`alexnet prepare`, `ensure_prepared`), `store` (`open_store`),
`stats` (mean image, RGB PCA), `transforms` (crops, reflection, PCA lighting), `loader`
(`make_loader`), `photos` (realistic JPEGs from scikit-image's photographs, for tests and
benchmarks).
"""
