"""`python -m modelspec`."""

from .cli import main

main()
