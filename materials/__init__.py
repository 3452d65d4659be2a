"""Floor 1: domain science, no Lightning anywhere.

Element tables, composition parsing and composition vectors (element fractions,
Magpie attributes). Everything here is usable from a notebook without torch.
"""
