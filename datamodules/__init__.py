"""Floor 2: one LightningDataModule per kind of input."""
