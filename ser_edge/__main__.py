"""Allow ``python -m ser_edge``."""
from ser_edge.cli.main import main

main()
