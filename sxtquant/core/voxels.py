"""Voxel sizes in nanometres, (z, y, x): one small type made at the file boundary.

A :class:`VoxelSize` is made once, where a volume is read (from its header) or where a
user gives ``--voxel-size``, and then passed through every stage to the final table.
It *is* a tuple of three floats, so it compares equal to ``(9.8, 9.8, 9.8)``, unpacks
as ``z, y, x = voxel``, and is written to JSON as a list; :meth:`VoxelSize.of` returns
it unchanged, so a function that accepts "a float or a (z, y, x) tuple" does not
normalise it again.

Examples
--------
>>> v = VoxelSize.of(9.8)
>>> v
VoxelSize(z=9.8, y=9.8, x=9.8)
>>> v == (9.8, 9.8, 9.8), VoxelSize.of(v) is v
(True, True)
>>> str(VoxelSize.of([20.0, 9.8, 9.8]))
'20 x 9.8 x 9.8 nm (z, y, x)'
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["VoxelSize", "as_voxel_size"]


class VoxelSize(tuple):
    """A voxel size in nm, ``(z, y, x)``: three positive finite floats.

    Parameters
    ----------
    z, y, x : float
        Voxel size along each axis in nm.
    z_assumed : bool
        The file recorded no z spacing and ``z`` was taken equal to ``x`` (a TIFF
        with resolution tags but no ImageJ ``spacing``); commands say so.

    Raises
    ------
    ValueError
        If a value is not a positive finite number.
    """

    def __new__(cls, z: float, y: float, x: float, *, z_assumed: bool = False):
        values = tuple(float(v) for v in (z, y, x))
        if not all(v > 0 and math.isfinite(v) for v in values):
            raise ValueError(f"voxel size must be positive numbers of nm, got {values!r}")
        self = super().__new__(cls, values)
        self.z_assumed = bool(z_assumed)
        return self

    def __getnewargs__(self):  # pickling (Dask ships voxel sizes to workers)
        return tuple(self)

    @classmethod
    def of(cls, voxel_size_nm: float | Sequence[float]) -> VoxelSize:
        """A :class:`VoxelSize` from one number (isotropic), or a sequence of one or three.

        A :class:`VoxelSize` comes back as it is.

        Raises
        ------
        ValueError
            If it is not one or three positive finite numbers.
        """
        if isinstance(voxel_size_nm, VoxelSize):
            return voxel_size_nm
        try:
            values = [float(voxel_size_nm)] * 3  # type: ignore[arg-type]
        except TypeError:
            try:
                values = [float(v) for v in voxel_size_nm]  # type: ignore[union-attr]
            except (TypeError, ValueError):
                values = []
            if len(values) == 1:  # one value given as a list (argparse nargs="+")
                values = values * 3
        except ValueError:
            values = []
        if len(values) != 3 or not all(v > 0 and math.isfinite(v) for v in values):
            raise ValueError(
                f"voxel size must be one or three positive numbers in nm, got {voxel_size_nm!r}"
            )
        return cls(*values)

    @property
    def z(self) -> float:
        return self[0]

    @property
    def y(self) -> float:
        return self[1]

    @property
    def x(self) -> float:
        return self[2]

    @property
    def isotropic(self) -> bool:
        """Whether the three sizes are equal."""
        return self[0] == self[1] == self[2]

    @property
    def volume_nm3(self) -> float:
        """The volume of one voxel in nm³."""
        return self[0] * self[1] * self[2]

    def __repr__(self) -> str:
        return f"VoxelSize(z={self[0]:g}, y={self[1]:g}, x={self[2]:g})"

    def __str__(self) -> str:
        text = " x ".join(f"{v:g}" for v in self) + " nm (z, y, x)"
        return text + (", z not recorded: taken as x" if self.z_assumed else "")


def as_voxel_size(voxel_size_nm: float | Sequence[float]) -> VoxelSize:
    """Normalise a voxel size (one number, or a sequence of 1 or 3) to a :class:`VoxelSize`.

    The same as :meth:`VoxelSize.of`.
    """
    return VoxelSize.of(voxel_size_nm)
