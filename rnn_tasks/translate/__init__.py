"""Machine translation: a recurrent encoder-decoder with attention over sentence pairs.

spec (stdlib only) -> data, model, decode, metrics -> task (train / predict / evaluate).
Nothing is imported here, so the CLI can import the spec without torch.
"""
