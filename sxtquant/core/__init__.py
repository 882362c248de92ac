"""What every stage shares: errors, defaults, voxel sizes, devices, memory, progress bars."""

from sxtquant.core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "defaults": ("THRESHOLD",),
        "device": ("DEVICES", "resolve_device"),
        "errors": ("InputError", "NotReadyError"),
        "memory": ("hold_freed_memory", "release_held_memory", "reuse_freed_memory", "trim_memory"),
        "progress": ("set_quiet", "is_quiet", "progress"),
        "voxels": ("VoxelSize", "as_voxel_size"),
    },
)
