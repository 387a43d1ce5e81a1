"""``python -m bcos.explain``: see :mod:`bcos.cli.explain`."""
from bcos.cli.explain import main

main()
