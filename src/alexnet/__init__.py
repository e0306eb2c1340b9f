"""AlexNet (Krizhevsky, Sutskever, Hinton, NIPS 2012) as a usable system.

Subpackages are imported on demand so that `alexnet --help` stays fast:
`alexnet.models`, `alexnet.data`, `alexnet.train`, `alexnet.eval`, `alexnet.infer`, `alexnet.viz`.
"""

__version__ = "0.1.0"
