"""Off-screen renderings of meshes (PyVista)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sxtquant.quantify.mesh import decimate_mesh


def object_colors(n: int, *, seed: int = 0) -> np.ndarray:
    """``n`` random, well-saturated RGB colours in [0, 1], shape (n, 3), from a seeded rng."""
    from matplotlib.colors import hsv_to_rgb

    rng = np.random.default_rng(seed)
    hsv = np.column_stack(
        [rng.uniform(0, 1, n), rng.uniform(0.55, 0.9, n), rng.uniform(0.75, 1.0, n)]
    )
    return hsv_to_rgb(hsv)


def render_meshes(
    meshes: Sequence,
    *,
    seed: int = 0,
    view: tuple[float, float] = (25.0, -60.0),
    max_faces: int = 150_000,
    figsize: tuple[float, float] = (6.0, 6.0),
    background: str = "white",
):
    """Draw all meshes in random colours with simple shading, off-screen (matplotlib).

    Parameters
    ----------
    meshes : sequence of trimesh.Trimesh
        Vertices in nm, (x, y, z).
    seed : int
        Seed of the random colours (one per mesh, in order).
    view : (elevation, azimuth) in degrees
        The camera, as matplotlib's ``Axes3D.view_init``.
    max_faces : int
        Meshes with more triangles in total are decimated for the drawing only.
    figsize : (width, height) in inches
    background : str
        Any matplotlib colour.

    Returns
    -------
    matplotlib.figure.Figure
        A figure on the Agg canvas (no display needed); close it when done.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    meshes = [m for m in meshes if len(m.faces)]
    if not meshes:
        raise ValueError("no meshes to render")
    total = sum(len(m.faces) for m in meshes)
    if total > max_faces:
        keep = max_faces / total
        meshes = [decimate_mesh(m, 1.0 - keep) if len(m.faces) > 200 else m for m in meshes]
    colors = object_colors(len(meshes), seed=seed)
    elev, azim = np.radians(view)
    # Light from behind the viewer's right shoulder, in the data's (x, y, z) frame.
    to_camera = np.array(
        [math.cos(elev) * math.cos(azim), math.cos(elev) * math.sin(azim), math.sin(elev)]
    )
    light = to_camera + np.array([0.3, -0.3, 0.5])
    light /= np.linalg.norm(light)
    polys, shades = [], []
    for mesh, color in zip(meshes, colors, strict=True):
        normals = np.asarray(mesh.face_normals)
        diffuse = np.clip(normals @ light, 0.0, 1.0)
        shade = 0.35 + 0.65 * diffuse
        polys.append(np.asarray(mesh.vertices)[np.asarray(mesh.faces)])
        shades.append(shade[:, None] * color[None, :])
    triangles = np.concatenate(polys)
    facecolors = np.clip(np.concatenate(shades), 0.0, 1.0)

    fig = Figure(figsize=figsize, dpi=100, facecolor=background)
    FigureCanvasAgg(fig)  # off-screen, whatever backend pyplot would pick
    ax = fig.add_subplot(projection="3d", facecolor=background)
    # edges in the face colour hide the anti-aliasing seams between triangles
    collection = Poly3DCollection(
        triangles, facecolors=facecolors, edgecolors=facecolors, linewidths=0.2
    )
    ax.add_collection3d(collection)
    lo = triangles.reshape(-1, 3).min(axis=0)
    hi = triangles.reshape(-1, 3).max(axis=0)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_zlim(lo[2], hi[2])
    ax.set_box_aspect(np.maximum(hi - lo, 1e-9 * max(1.0, float((hi - lo).max()))))
    ax.view_init(elev=view[0], azim=view[1])
    ax.set_axis_off()
    fig.subplots_adjust(0, 0, 1, 1)
    return fig


def render_meshes_png(
    meshes: Sequence,
    path: str | os.PathLike,
    *,
    seed: int = 0,
    view: tuple[float, float] = (25.0, -60.0),
    dpi: int = 150,
    **kwargs,
) -> Path:
    """Render all meshes in random colours (see :func:`render_meshes`) to a PNG file.

    Works with no display and no OpenGL (matplotlib's Agg canvas). Written
    atomically by :func:`sxtquant.io.save_figure`, cropped to the drawing.

    Parameters
    ----------
    meshes : sequence of trimesh.Trimesh
    path : path-like
        The PNG to write.
    seed, view
        As :func:`render_meshes`.
    dpi : int
        Resolution; the default 6 × 6 inch figure gives at most 900 × 900 pixels.
    **kwargs
        Passed to :func:`render_meshes` (``max_faces``, ``figsize``, ``background``).

    Returns
    -------
    Path
        The path written.
    """
    from sxtquant.io.files import save_figure

    fig = render_meshes(meshes, seed=seed, view=view, **kwargs)
    return save_figure(fig, path, dpi=dpi)
