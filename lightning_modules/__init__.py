"""Floor 2: thin LightningModules per task family, taking injected pure nets."""
