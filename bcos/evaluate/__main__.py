"""``python -m bcos.evaluate``: see :mod:`bcos.evaluate.cli`."""
from .cli import main

main()
