"""Many tomograms and huge ones: batches on Dask, sidecar records, block-wise processing."""

from sxtquant.core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "batch": (
            "SUMMARY_FILE",
            "RECORD_SUFFIX",
            "DEFAULT_RETRIES",
            "SUMMARY_COLUMNS",
            "Inputs",
            "expand_inputs",
            "JobResult",
            "Job",
            "Outcome",
            "run_jobs",
            "summary_table",
            "report",
        ),
        "block_objects": (
            "check_mask_values",
            "ObjectPlan",
            "plan_objects",
            "label_blocks",
            "write_labels",
            "measure_labels",
            "quantify_blocks",
        ),
        "blocks": (
            "DEFAULT_BLOCK_SLICES",
            "open_blocks",
            "cached_model",
            "release_free_memory",
            "predict_blocks",
            "smooth_z_blocks",
            "iter_mask_slices",
            "SegmentStats",
            "segment_ome_zarr",
            "write_tiff_slices",
        ),
        "measurement": (
            "Measured",
            "QuantifySpec",
            "filopodia_labels_path",
            "filopodia_paths",
            "measure_file",
            "quantify_job",
            "tidy",
            "tomogram_name",
        ),
        "records": ("file_sha256", "model_identity", "record_matches", "write_record"),
        "schedulers": (
            "SchedulerSpec",
            "SCHEDULER_HELP",
            "parse_scheduler",
            "local_workers",
            "connect",
        ),
        "segmentation": (
            "MASK_RULES",
            "SegmentSpec",
            "model_reference",
            "output_paths",
            "segment_file",
        ),
    },
)
