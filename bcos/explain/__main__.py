"""``python -m bcos.explain``: see :mod:`bcos.explain.cli`."""
from .cli import main

main()
