"""Time-series forecasting: an RNN reads the last `lookback` steps of a CSV series and
predicts the next `horizon` values of its target column (direct multi-step).

spec.py is stdlib only (the CLI imports it); data, model, metrics and task use torch.
"""
