"""Using trained weights (loaded by `alexnet.train.weights.load_weights`): predict and embed image
files (`predict`), export them (`export`, `release`), features of prepared images (`features`)
and k-NN anomaly scoring (`anomaly`). See docs/architecture.md."""
