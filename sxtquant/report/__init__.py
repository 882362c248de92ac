"""Figures, renderings and HTML pages from arrays and tables (no file I/O)."""

from sxtquant.core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "sxtquant.evaluate.matching": (
            "FILOPODIUM_QUANTITIES",
            "FilopodiumQuantity",
            "match_filopodia",
            "matching_summary",
        ),
        "demo": (
            "FIGURES",
            "demo_figures",
            "matching_text",
            "meshes_to_draw",
            "report_html",
            "summary_rows",
            "summary_text",
        ),
        "figures": (
            "COLORS",
            "robust_limits",
            "overlay_rgb",
            "comparison_masks",
            "slice_overlay_figure",
            "crop_figure",
            "message_figure",
            "measured_vs_true_figure",
        ),
        "filopodia_plot": ("plot_filopodia",),
        "html": ("Section", "html_table", "html_key_values", "html_figure", "html_page"),
        "render": ("object_colors", "render_meshes", "render_meshes_png"),
    },
)
