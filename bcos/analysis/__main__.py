"""``python -m bcos.analysis``: see :mod:`bcos.cli.analyze`."""
from bcos.cli.analyze import main

main()
