"""Using trained weights (loaded by `alexnet.train.weights.load_weights`): predict and embed image
files (`predict`), export them (`export`, `release`), features of prepared images (`features`),
k-NN anomaly scoring (`anomaly`) and top-1/top-5 error on a data split (`evaluate`). See
docs/architecture.md."""
