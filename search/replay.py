"""`python -m search.replay`, the name users know, runs `python -m search.tools.replay`."""

from search.tools.replay import main

if __name__ == "__main__":
    raise SystemExit(main())
