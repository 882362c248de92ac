"""The one membranes-to-objects recipe, as the library, quantify and the demo run it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sxtquant.io.volumes import write_mask
from sxtquant.quantify.morphology import measure_objects
from sxtquant.quantify.recipe import SEGMENTATION, ObjectRecipe, objects_from_membranes
from sxtquant.simulate.shapes import Sphere


def _membrane_shell(ball, grid, spacing):
    """A 2-3 voxel shell centred on the ball's surface, like the simulator's labels."""
    zz, yy, xx = np.indices(grid) * spacing
    r = np.sqrt(
        (zz - ball.center[0]) ** 2 + (yy - ball.center[1]) ** 2 + (xx - ball.center[2]) ** 2
    )
    return np.abs(r - ball.semi_axes[0]) <= spacing


def test_segmentation_recipe_puts_the_surface_on_the_membrane_mid_surface():
    spacing, grid = 10.0, (50, 60, 60)
    ball = Sphere((250.0, 300.0, 300.0), 180.0)
    shell = _membrane_shell(ball, grid, spacing)
    objects = objects_from_membranes(shell, spacing, SEGMENTATION)
    assert objects.max() == 1
    volume = float((objects > 0).sum()) * spacing**3
    assert volume == pytest.approx(ball.volume_nm3, rel=0.03)
    # the plain fill keeps the membrane's outer half: larger by about a voxel in radius
    plain = objects_from_membranes(shell, spacing, ObjectRecipe())
    assert (plain > 0).sum() * spacing**3 > 1.1 * ball.volume_nm3


def test_recipe_drops_specks_and_splits_touching_objects():
    spacing, grid = 10.0, (40, 60, 110)
    a = Sphere((200.0, 300.0, 300.0), 150.0)
    b = Sphere((200.0, 300.0, 580.0), 150.0)  # the two shells touch
    shell = _membrane_shell(a, grid, spacing) | _membrane_shell(b, grid, spacing)
    shell[5, 5, 5] = shell[5, 5, 6] = True  # a speck of 2 voxels
    merged = objects_from_membranes(shell, spacing, SEGMENTATION.replace(separate=False))
    split = objects_from_membranes(shell, spacing, SEGMENTATION)
    assert merged.max() == 1 and split.max() == 2
    assert SEGMENTATION.smallest_voxels(spacing) == 200  # 2e5 nm³ of 1000 nm³ voxels


def test_recipe_rejects_negative_settings():
    with pytest.raises(ValueError, match="erosion"):
        ObjectRecipe(erosion=-1)
    with pytest.raises(ValueError, match="min_volume_nm3"):
        ObjectRecipe(min_volume_nm3=float("nan"))


def test_quantify_segmentation_gives_the_library_recipe(run_cli, tmp_path):
    """``segment`` then ``quantify --segmentation`` gives the demo's objects."""
    spacing, grid = 10.0, (40, 60, 110)
    shell = _membrane_shell(Sphere((200.0, 300.0, 300.0), 150.0), grid, spacing)
    shell |= _membrane_shell(Sphere((200.0, 300.0, 580.0), 150.0), grid, spacing)
    write_mask(tmp_path / "cell.mask.tif", shell, spacing)
    result = run_cli(
        "quantify", tmp_path / "cell.mask.tif", "--segmentation", "-o", tmp_path / "t.csv"
    )
    assert result.returncode == 0, result.stderr
    cli = pd.read_csv(tmp_path / "t.csv")
    library = measure_objects(objects_from_membranes(shell, spacing, SEGMENTATION), spacing)
    assert len(cli) == len(library) == 2
    np.testing.assert_allclose(cli["volume_nm3"], library["volume_nm3"])
    np.testing.assert_allclose(cli["surface_area_nm2"], library["surface_area_nm2"], rtol=1e-9)
