"""One module per ``imusic`` subcommand (see ``imusic.cli``)."""
