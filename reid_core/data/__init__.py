"""Data layer: image I/O, manifest schema, dataset adapters, phantom, cache."""
