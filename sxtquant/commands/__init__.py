"""One module per ``sxtquant`` verb: ``HELP``, ``add_arguments(parser)``, ``run(args)``."""
