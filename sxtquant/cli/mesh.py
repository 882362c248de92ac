"""sxtquant mesh: surface meshes of the objects of a mask (STL, PLY, OBJ, GLB, VTK).

MASK is a binary mask (any non-zero voxel is foreground, e.g. 0/255) or an
instance-label volume (0 = background, one integer per object), in any format
sxtquant reads. Every label is split into its 3D connected components and each
component becomes one closed (watertight) triangle mesh: marching cubes (Lewiner)
with the voxel spacing, Taubin smoothing (--smooth iterations), optional quadric
decimation (--decimate), with surfaces closed where objects touch the volume's edge.
Components whose raw surface has fewer than --min-faces triangles are dropped.

All objects go into ONE file, OUT, whose format is --format or else OUT's suffix:
.stl (merged, STL knows no objects), .ply (per-face property 'label'),
.obj (one 'o object_<label>[_<part>]' group per object), .glb (one named node each),
.vtk / .vtp (per-cell arrays 'label' and 'object'). Coordinates are in nm in
(x, y, z) order, as ParaView, Blender and MeshLab expect, in the frame of the whole
volume: voxel [z, y, x] has its centre at (x*dx, y*dy, z*dz) nm.

The voxel size comes from the file's header, or from --voxel-size (nm; one value or
three for z y x). A file that records none needs --voxel-size.

--render PNG also draws all objects in random colours (like Fig. 1B of Dyhr et al.
2023) off-screen with matplotlib: no display or OpenGL needed.

--separate first splits touching objects (of a mask, or within each label) by a
marker-controlled watershed on the distance transform (sxtquant.quantify.objects), so that
e.g. two touching vesicles become two meshes, numbered 1..n.

Example:
  sxtquant mesh cell.mask.tif -o cell_objects.glb --min-faces 200 --render cell.png
"""

from __future__ import annotations

import argparse

from sxtquant.cli.options import add_voxel_size_option

HELP = "surface meshes of the objects of a mask (STL, PLY, OBJ, GLB, VTK)"

FORMATS = ("stl", "ply", "obj", "glb", "vtk")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sxtquant mesh`."""
    from sxtquant.quantify.mesh import DEFAULT_MIN_FACES, DEFAULT_SMOOTH_ITERATIONS

    parser.add_argument("mask", metavar="MASK", help="binary mask or instance labels (z, y, x)")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="mesh file with all objects (.stl, .ply, .obj, .glb, .vtk, .vtp)",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        help="output format (default: from OUT's suffix; added to OUT when it has none)",
    )
    add_voxel_size_option(parser)
    parser.add_argument(
        "--min-faces",
        type=int,
        default=DEFAULT_MIN_FACES,
        metavar="N",
        help="drop objects whose raw surface has fewer triangles "
        f"(default {DEFAULT_MIN_FACES}; one voxel gives 8)",
    )
    parser.add_argument(
        "--smooth",
        type=int,
        default=DEFAULT_SMOOTH_ITERATIONS,
        metavar="N",
        help="Taubin smoothing iterations, volume-preserving "
        f"(default {DEFAULT_SMOOTH_ITERATIONS}; 0 keeps the voxel staircase)",
    )
    parser.add_argument(
        "--decimate",
        type=float,
        metavar="F",
        help="fraction of triangles to remove by quadric decimation, in [0, 1) (0.9 keeps 10%%)",
    )
    parser.add_argument(
        "--render", metavar="PNG", help="also write a PNG picture of all objects in random colours"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the random colours of --render (default 0)"
    )
    parser.add_argument(
        "--separate",
        action="store_true",
        help="split touching objects by a distance-transform watershed before meshing",
    )
    parser.add_argument(
        "--dataset", help="HDF5 only: path of the dataset inside the file (default: the only one)"
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from sxtquant.core.errors import InputError
    from sxtquant.io.volumes import read_volume
    from sxtquant.quantify.mesh import labels_to_meshes, write_meshes
    from sxtquant.report.render import render_meshes_png

    out = _output_path(Path(args.output), args.format)
    if args.min_faces < 0:
        raise InputError("--min-faces", f"must be >= 0, got {args.min_faces}")
    if args.smooth < 0:
        raise InputError("--smooth", f"must be >= 0, got {args.smooth}")
    if args.decimate is not None and not 0.0 <= args.decimate < 1.0:
        raise InputError("--decimate", f"must lie in [0, 1), got {args.decimate}")
    if args.render is not None and Path(args.render).suffix.lower() != ".png":
        raise InputError(args.render, "--render writes a PNG; give a name ending in .png")

    volume = read_volume(args.mask, dataset=args.dataset)
    voxel = volume.require_voxel_size(args.voxel_size)
    data = np.asarray(volume.data)
    if volume.shape[0] < 2:
        raise InputError(args.mask, f"meshes need a 3D volume, got shape {volume.shape}")
    if np.issubdtype(data.dtype, np.floating) and not np.array_equal(data, np.round(data)):
        raise InputError(
            args.mask,
            "holds non-integral values; give a binary mask or instance labels "
            "(threshold a probability map first)",
        )
    if not data.any():
        raise InputError(args.mask, "the mask has no foreground voxels")
    if data.dtype == np.uint8 and np.isin(data, (0, 255)).all():
        data = data > 0  # the 0/255 mask convention: one label, split into its components
    if args.separate:
        from sxtquant.quantify.objects import separate_objects

        data = separate_objects(data, voxel)

    meshes = labels_to_meshes(
        data,
        voxel,
        min_faces=args.min_faces,
        smooth_iterations=args.smooth,
        decimate=args.decimate,
    )
    if not meshes:
        raise InputError(
            args.mask,
            f"no object has a surface of at least {args.min_faces} faces; lower --min-faces",
        )
    write_meshes(meshes, out)
    faces = sum(len(m.faces) for m in meshes)
    print(f"{out}: {len(meshes)} objects, {faces} triangles, coordinates in nm (x, y, z)")
    if args.render is not None:
        render_meshes_png(meshes, args.render, seed=args.seed)
        print(f"{args.render}: rendering of {len(meshes)} objects")
    return 0


def _output_path(out, fmt: str | None):
    from sxtquant.core.errors import InputError
    from sxtquant.quantify.mesh import mesh_format

    if fmt is None:
        try:
            mesh_format(out)
        except ValueError as exc:
            raise InputError(out, f"{exc} (or choose one with --format)") from None
        return out
    if not out.suffix:
        return out.with_name(f"{out.name}.{fmt}")
    try:
        suffix_format = mesh_format(out)
    except ValueError:
        suffix_format = None
    if suffix_format != fmt:
        raise InputError(out, f"the suffix '{out.suffix}' does not match --format {fmt}")
    return out
