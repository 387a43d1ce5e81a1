"""``python -m bcos.evaluate``: see :mod:`bcos.cli.evaluate`."""
from bcos.cli.evaluate import main

main()
