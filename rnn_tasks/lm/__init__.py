"""The language model task: spec, data, model, sampling and the task entry points."""
