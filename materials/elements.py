"""The element table of ElemNet's input vector.

Jha et al., "ElemNet: Deep Learning the Chemistry of Materials From Only
Elemental Composition", Sci. Rep. 8, 17593 (2018); dissertation 5.2.1: the 86
elements H..Pu without He, Ne, Ar, Po, At, Rn, Fr and Ra, in this order.
"""

from __future__ import annotations

ELEMNET_ELEMENTS: tuple[str, ...] = (
    "H", "Li", "Be", "B", "C", "N", "O", "F", "Na", "Mg", "Al", "Si", "P", "S",
    "Cl", "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn",
    "Ga", "Ge", "As", "Se", "Br", "Kr", "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Tc",
    "Ru", "Rh", "Pd", "Ag", "Cd", "In", "Sn", "Sb", "Te", "I", "Xe", "Cs", "Ba",
    "La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm",
    "Yb", "Lu", "Hf", "Ta", "W", "Re", "Os", "Ir", "Pt", "Au", "Hg", "Tl", "Pb",
    "Bi", "Ac", "Th", "Pa", "U", "Np", "Pu",
)

ELEMENT_INDEX: dict[str, int] = {symbol: i for i, symbol in enumerate(ELEMNET_ELEMENTS)}

N_ELEMENTS = len(ELEMNET_ELEMENTS)
assert N_ELEMENTS == 86
