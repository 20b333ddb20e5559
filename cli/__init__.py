"""The rnnq command line. Sends tasks by name; never imports torch."""
