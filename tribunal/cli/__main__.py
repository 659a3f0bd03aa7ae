"""`python -m tribunal.cli`: how the supervisor and the lab start child processes."""

from tribunal.cli import main

main()
