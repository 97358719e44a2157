"""``python -m nncli``: the command line (sweep trials run as ``python -m nncli train``)."""

from nncli.cli import main

main()
