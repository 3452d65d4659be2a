"""Datasets simulated from physics once into a versioned cache, then read fast."""
