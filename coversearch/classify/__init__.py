"""Genre classifiers over stored features: one estimator interface, one module per method."""
