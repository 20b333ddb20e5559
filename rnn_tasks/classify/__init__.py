"""Text classification (e.g. sentiment): labelled CSV/TSV -> recurrent classifier.

spec (stdlib only: ClassifySpec, check_inputs), table (stdlib CSV reading), data,
model, metrics, task (train / predict / evaluate for the worker).
"""
