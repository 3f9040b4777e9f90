"""``python -m processors`` runs the ``leaderboard`` command line."""

from processors.cli import main

main()
