"""sxtquant info: print the shape, data type, voxel size and value range of volumes.

Reads every format sxtquant reads (MRC/REC/ST, TIFF stacks and folders of TIFF
slices, HDF5, OME-Zarr) exactly as the other verbs do, so it is the quickest way
to check that a file will be understood: axis order is (z, y, x), the voxel size
is in nm (MRC headers store Å and are converted).
"""

from __future__ import annotations

import argparse

HELP = "shape, dtype, voxel size (nm) and value range of volumes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sxtquant info`."""
    parser.add_argument("inputs", nargs="+", metavar="VOLUME", help="volume files or folders")
    parser.add_argument(
        "--dataset", help="HDF5 only: path of the dataset inside the file (default: the only one)"
    )


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from sxtquant.io.volumes import read_volume

    volumes = [read_volume(path, dataset=args.dataset) for path in args.inputs]
    for volume in volumes:
        data = volume.data
        voxel = (
            "unknown"
            if volume.voxel_size_nm is None
            else " x ".join(f"{v:g}" for v in volume.voxel_size_nm) + " nm (z, y, x)"
        )
        print(f"{volume.path}")
        print(f"  shape (z, y, x): {' x '.join(map(str, data.shape))}")
        print(f"  dtype:           {data.dtype}")
        print(f"  voxel size:      {voxel}")
        print(f"  min / max:       {np.min(data):g} / {np.max(data):g}")
    return 0
