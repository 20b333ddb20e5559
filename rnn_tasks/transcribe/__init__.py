"""Speech recognition: audio + transcripts -> a CTC acoustic model over characters.

spec (stdlib only: TranscribeSpec, text normalisation, the bundle format, check_inputs),
manifest (stdlib: reading CSV/TSV manifests and name.wav + name.txt folders, building
bundles), audio (soundfile + soxr: decoding and resampling, no torch), features (log-mel
and SpecAugment in torch), data, model, decode (greedy and CTC prefix beam search with
optional language-model fusion), task (train / predict / evaluate for the worker).
"""
