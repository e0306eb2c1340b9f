"""`python -m alexnet ...` (what `torchrun -m alexnet` runs)."""

from alexnet.cli import main

raise SystemExit(main())
