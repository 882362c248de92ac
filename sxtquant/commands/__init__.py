"""One module per ``sxtquant`` verb: ``HELP``, ``add_arguments(parser)``, ``run(args)``."""


def add_voxel_size_option(parser) -> None:
    """``--voxel-size NM [NM NM]``: overrides the file header's voxel size."""
    parser.add_argument(
        "--voxel-size",
        type=float,
        nargs="+",
        metavar="NM",
        help="voxel size in nm, one value or three (z y x); default: from the file header",
    )
