"""`python -m modelspec`."""

from .resident import collect_less

collect_less()  # before the imports: they are most of what a collection would walk

from .cli import main  # noqa: E402

main()
