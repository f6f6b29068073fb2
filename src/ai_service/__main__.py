"""`python -m ai_service` runs the command line."""

from ai_service.cli import main

main()
