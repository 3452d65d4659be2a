"""Which unlabelled rows to label next: the acquisitions of active learning (:mod:`cli.active_learn`).

Each function returns positions into the rows it is given. ``std`` alone (the most uncertain rows) needs nothing
here; the others spread the batch over the pool: by k-means clusters of the compositions (the most uncertain row
of each, or the most typical row of each cluster without labels) or, in the trained net's own representation, by
the largest cluster's farthest row (LCMD).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def _kmeans(features: np.ndarray, k: int, seed) -> np.ndarray:
    """Each row's cluster among ``k`` (mini-batch k-means, seeded by ``seed``)."""
    from sklearn.cluster import MiniBatchKMeans

    return MiniBatchKMeans(n_clusters=k, n_init=1, batch_size=4096,
                           random_state=int(np.random.default_rng(seed).integers(2**31))).fit_predict(features)


def most_uncertain_per_cluster(features: np.ndarray, std: np.ndarray, n: int, seed) -> np.ndarray:
    """Positions of ``n`` rows: the largest ``std`` of each of ``n`` k-means clusters of ``features`` (seeded), and
    where a cluster came out empty, the most uncertain rows not yet taken."""
    if n >= len(features):
        return np.arange(len(features))
    clusters = _kmeans(features, n, seed)
    order = np.lexsort((-std, clusters))  # by cluster, the most uncertain first within each
    first = order[np.r_[True, clusters[order][1:] != clusters[order][:-1]]]
    if len(first) < n:
        taken, by_std = np.zeros(len(std), bool), np.argsort(-std, kind="stable")
        taken[first] = True
        first = np.concatenate([first, by_std[~taken[by_std]][:n - len(first)]])
    return np.sort(first)


def most_typical_of_uncovered_clusters(features: np.ndarray, labelled: np.ndarray, n: int, seed,
                                       neighbours: int = 20) -> np.ndarray:
    """Positions of ``n`` rows not in ``labelled``, chosen for how well they stand for the pool (TypiClust, Hacohen
    et al. 2022): k-means of ``features`` (seeded) into as many clusters as rows labelled after this round; then,
    ``n`` times, the largest of the clusters with the fewest labelled rows gives its most typical free row (the
    smallest mean distance to its ``neighbours`` nearest rows of the cluster)."""
    from sklearn.neighbors import NearestNeighbors

    free = np.ones(len(features), bool)
    free[labelled] = False
    if n >= free.sum():
        return np.flatnonzero(free)
    k = len(labelled) + n
    clusters = _kmeans(features, k, seed)
    by_cluster = np.argsort(clusters, kind="stable")
    bounds = np.searchsorted(clusters[by_cluster], np.arange(k + 1))
    sizes, covered = np.diff(bounds), np.bincount(clusters[labelled], minlength=k)
    left = np.bincount(clusters[free], minlength=k)  # free rows per cluster
    closeness: dict[int, np.ndarray] = {}  # per cluster: each member's mean distance to its nearest members
    picked = []
    for _ in range(n):
        open_ = np.flatnonzero(left > 0)
        c = open_[np.lexsort((-sizes[open_], covered[open_]))[0]]  # fewest labels, then largest
        members = by_cluster[bounds[c]:bounds[c + 1]]
        if c not in closeness:
            m = min(neighbours, len(members) - 1)
            if m == 0:
                closeness[c] = np.zeros(1)
            else:
                distance, _ = NearestNeighbors(n_neighbors=m + 1).fit(features[members]).kneighbors(features[members])
                closeness[c] = distance[:, 1:].mean(1)
        row = members[np.argmin(np.where(free[members], closeness[c], np.inf))]
        picked.append(row)
        free[row], covered[c], left[c] = False, covered[c] + 1, left[c] - 1
    return np.sort(np.array(picked))


def largest_cluster_maximum_distance(pool: torch.Tensor, labelled: torch.Tensor, n: int,
                                     chunk: int = 4096) -> np.ndarray:
    """Positions of ``n`` rows of ``pool`` (LCMD, Holzmüller et al., JMLR 24, 164 (2023)): each pool row belongs to
    its nearest centre, the ``labelled`` rows at first; ``n`` times, the cluster with the largest sum of squared
    distances to its centre gives its farthest row, which becomes a centre. A batch spread over the pool, drawn
    where the labelled rows stand for it worst."""
    pool, labelled = pool.double(), labelled.double()
    if n >= len(pool):
        return np.arange(len(pool))
    distance, owner = torch.empty(len(pool), dtype=pool.dtype), torch.empty(len(pool), dtype=torch.long)
    for start in range(0, len(pool), chunk):
        d2 = torch.cdist(pool[start:start + chunk], labelled).square()
        distance[start:start + chunk], owner[start:start + chunk] = d2.min(1)
    free, picked = torch.ones(len(pool), dtype=torch.bool), []
    for i in range(n):
        spread = torch.zeros(len(labelled) + i, dtype=pool.dtype).index_add_(0, owner, distance)
        candidates = free & (owner == spread.argmax()) if spread.max() > 0 else free  # all left sit on centres
        row = int(torch.where(candidates, distance, -1.0).argmax())
        picked.append(row)
        d2 = (pool - pool[row]).square().sum(1)
        closer = d2 < distance
        distance[closer], owner[closer] = d2[closer], len(labelled) + i
        distance[row], owner[row], free[row] = 0.0, len(labelled) + i, False  # taken: its own centre
    return np.sort(np.array(picked))


@torch.no_grad()
def last_hidden(module: nn.Module, x: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """Each row's last hidden layer (the input of the net's last linear layer), in eval mode; for an ensemble the
    members' side by side."""
    nets = list(module.members) if getattr(module, "members", None) is not None else [module.net]
    was_training = module.training
    module.eval()
    features = []
    for net in nets:
        head = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
        grabbed: list[torch.Tensor] = []
        hook = head.register_forward_hook(lambda _, inputs, __: grabbed.append(inputs[0].float()))
        try:
            for part in x.split(chunk):
                net(part)
        finally:
            hook.remove()
        features.append(torch.cat(grabbed))
    module.train(was_training)
    return torch.cat(features, 1)
