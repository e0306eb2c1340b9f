"""One module per `alexnet` verb (see `alexnet.cli.COMMANDS`)."""
