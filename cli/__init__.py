"""Floor 3: commands that compose a run from a config (train, predict, baseline, bench)."""
