"""Chemical categories of Table 3.3 (diss. 3.3.9), for counting screened systems.

The paper excludes systems with lanthanides or actinides from the table and
counts, per arity, the systems with at least one new candidate in: compounds
containing Li, K or Na; chalco-/oxyhalides (a chalcogen O, S, Se, Te with a
halogen F, Cl, Br, I); metal oxides (O with metals only); 3d metal oxides (O
with 3d transition metals Sc..Zn only); intermetallics (metals only). Metals
here are every element except H, the noble gases, the nonmetals B C N O F P S
Cl Se Br I and the metalloids Si Ge As Sb Te (a choice stated, not the paper's
list, which it does not give).
"""

from __future__ import annotations

LANTHANIDES = frozenset("La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu".split())
ACTINIDES = frozenset("Ac Th Pa U Np Pu".split())
ALKALI = frozenset("Li K Na".split())
CHALCOGENS = frozenset("O S Se Te".split())
HALOGENS = frozenset("F Cl Br I".split())
NONMETALS = frozenset("H He Ne Ar Kr Xe B C N O F P S Cl Se Br I Si Ge As Sb Te".split())
TRANSITION_3D = frozenset("Sc Ti V Cr Mn Fe Co Ni Cu Zn".split())

CATEGORIES = ("[Li,K,Na]-containing", "Chalco-/oxyhalides", "Metal oxides", "3d metal oxides", "Intermetallics")


def categories(elements: set[str] | frozenset[str]) -> list[str]:
    """The Table 3.3 categories of one chemical system (none for lanthanide/actinide systems)."""
    elements = frozenset(elements)
    if elements & (LANTHANIDES | ACTINIDES):
        return []
    found = []
    if elements & ALKALI:
        found.append(CATEGORIES[0])
    if elements & CHALCOGENS and elements & HALOGENS:
        found.append(CATEGORIES[1])
    others = elements - {"O"}
    if "O" in elements and others and not others & NONMETALS:
        found.append(CATEGORIES[2])
        if others <= TRANSITION_3D:
            found.append(CATEGORIES[3])
    if not elements & NONMETALS:
        found.append(CATEGORIES[4])
    return found


def has_f_block(elements) -> bool:
    return bool(frozenset(elements) & (LANTHANIDES | ACTINIDES))
