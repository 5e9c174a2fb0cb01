"""Points in the latent space worth decoding: paths between two codes (linear, slerp), analogies, traversals
along one dimension, neighbourhoods of a code, and the nearest codes to a query.

Plain tensor geometry, no model: the API encodes sentences, calls these, and decodes the points.
"""

from __future__ import annotations

import torch

from ..checks import is_real, is_whole
from ..errors import TextVAEError

PATHS = ("linear", "slerp")
MAX_STEPS = 100_000  # points on a path or sweep: far past where neighbouring points decode alike


def check_steps(steps, what: str = "steps") -> None:
    """Fail with one line unless `steps` is a whole number from 2 to MAX_STEPS."""
    if not is_whole(steps) or steps < 2:
        raise TextVAEError(f"{what}: must be a whole number >= 2 (the two ends included), got {steps!r}")
    if steps > MAX_STEPS:
        raise TextVAEError(f"{what}: at most {MAX_STEPS:,} points, got {steps:,}; neighbouring points that close "
                           "decode to the same sentence: use fewer steps")
METRICS = ("cosine", "euclidean")


def linear_path(start: torch.Tensor, end: torch.Tensor, steps: int) -> torch.Tensor:
    """`steps` evenly spaced points from `start` to `end` inclusive (the homotopy of Bowman et al. 2016)."""
    weights = torch.linspace(0.0, 1.0, steps, device=start.device, dtype=start.dtype).unsqueeze(1)
    return (1 - weights) * start.unsqueeze(0) + weights * end.unsqueeze(0)


def slerp_path(start: torch.Tensor, end: torch.Tensor, steps: int) -> torch.Tensor:
    """`steps` points from `start` to `end` inclusive along the great circle between their directions
    (Shoemake 1985), each with the norm interpolated linearly between the two ends' norms.

    White 2016 (Sampling Generative Networks) recommends slerp for Gaussian latent spaces: a straight
    line between two typical codes passes near the origin, where the prior puts codes of atypically
    small norm, while slerp stays at typical norms. The ends are returned exactly as given; when the
    directions are (nearly) parallel or opposite, or a norm is zero, the angle is undefined or unstable
    and the path falls back to the straight line.
    """
    start_norm, end_norm = start.norm(), end.norm()
    if float(start_norm) == 0.0 or float(end_norm) == 0.0:
        return linear_path(start, end, steps)
    start_unit, end_unit = start / start_norm, end / end_norm
    angle = torch.arccos((start_unit * end_unit).sum().clamp(-1.0, 1.0))
    if float(torch.sin(angle)) < 1e-6:
        return linear_path(start, end, steps)
    weights = torch.linspace(0.0, 1.0, steps, device=start.device, dtype=start.dtype).unsqueeze(1)
    directions = (torch.sin((1 - weights) * angle) * start_unit
                  + torch.sin(weights * angle) * end_unit) / torch.sin(angle)
    path = ((1 - weights) * start_norm + weights * end_norm) * directions
    path[0], path[-1] = start, end
    return path


def latent_path(start: torch.Tensor, end: torch.Tensor, steps: int, path: str = "linear") -> torch.Tensor:
    """`steps` points (ends included) on the chosen path between two codes."""
    if path not in PATHS:
        raise TextVAEError(f"path: '{path}' is not one of {', '.join(PATHS)}")
    check_steps(steps)
    return (slerp_path if path == "slerp" else linear_path)(start, end, steps)


def analogy_point(z_a: torch.Tensor, z_b: torch.Tensor, z_c: torch.Tensor) -> torch.Tensor:
    """a is to b as c is to ?: z_c moved by the offset that takes a to b, z_b − z_a + z_c."""
    return z_b - z_a + z_c


def traversal_values(span: float, steps: int) -> torch.Tensor:
    """`steps` evenly spaced values from −span to +span (prior standard deviations)."""
    if not is_real(span) or not span > 0:
        raise TextVAEError(f"span: must be a number > 0 (how far from 0 to go, in prior standard deviations), "
                           f"got {span!r}")
    check_steps(steps)
    return torch.linspace(-float(span), float(span), steps)


def traversal_points(origin: torch.Tensor, dimension: int, values: torch.Tensor) -> torch.Tensor:
    """Copies of `origin`, one per value, with coordinate `dimension` set to that value and the rest kept."""
    size = origin.numel()
    if not is_whole(dimension) or not 0 <= dimension < size:
        raise TextVAEError(f"dimension: must be a whole number in 0..{size - 1} (the latent size is {size}), "
                           f"got {dimension!r}")
    points = origin.unsqueeze(0).repeat(len(values), 1)
    points[:, dimension] = values.to(points)
    return points


def neighbourhood_points(center: torch.Tensor, count: int, radius: float,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """`count` codes center + radius·ε with ε ~ N(0, I): the sentences the model places around one."""
    if not is_real(radius) or not radius >= 0:
        raise TextVAEError(f"radius: must be a number >= 0 (the standard deviation of the noise), got {radius!r}")
    noise = torch.randn((count, center.numel()), generator=generator, device=center.device, dtype=center.dtype)
    return center.unsqueeze(0) + radius * noise


def closest_codes(query: torch.Tensor, corpus: torch.Tensor, k: int,
                  metric: str = "cosine") -> tuple[torch.Tensor, torch.Tensor]:
    """The k corpus rows closest to each query row: (scores, indices), each (queries, k), best first.

    Scores are cosine similarities (higher is closer) or Euclidean distances (lower is closer).
    """
    check_search(k, metric)
    k = min(k, corpus.size(0))
    if metric == "cosine":
        similarity = torch.nn.functional.normalize(query, dim=1) @ torch.nn.functional.normalize(corpus, dim=1).T
        return similarity.topk(k, dim=1)
    distances = torch.cdist(query, corpus)
    scores, indices = distances.topk(k, dim=1, largest=False)
    return scores, indices


def check_search(k: int, metric: str) -> None:
    """Fail with one line on a bad neighbour count or metric, before any encoding is spent."""
    if metric not in METRICS:
        raise TextVAEError(f"metric: '{metric}' is not one of {', '.join(METRICS)}")
    if not is_whole(k) or k < 1:
        raise TextVAEError(f"k: must be a whole number >= 1, got {k!r}")


def collapse_repeats(sentences: list[str]) -> list[tuple[int, str]]:
    """(step, sentence) for each run of equal consecutive sentences, at the run's first step."""
    kept: list[tuple[int, str]] = []
    for step, sentence in enumerate(sentences):
        if not kept or kept[-1][1] != sentence:
            kept.append((step, sentence))
    return kept
