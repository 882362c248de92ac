"""Files in and out: volumes (MRC, TIFF, HDF5, OME-Zarr), tables, atomic output, downloads."""

from sxtquant.core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "sxtquant.core.voxels": ("VoxelSize",),
        "files": (
            "atomic_output",
            "write_table",
            "json_text",
            "write_json",
            "write_text",
            "save_figure",
        ),
        "formats": (
            "MRC_SUFFIXES",
            "TIFF_SUFFIXES",
            "HDF5_SUFFIXES",
            "ZARR_SUFFIXES",
            "format_of",
            "volume_stem",
        ),
        "volumes": (
            "Volume",
            "read_volume",
            "as_zyx",
            "check_values",
            "read_mask",
            "write_volume",
            "write_mask",
            "mask_to_uint8",
            "write_probability",
        ),
        "zarr": ("open_ome_zarr", "ome_zarr_metadata", "create_ome_zarr"),
    },
)
