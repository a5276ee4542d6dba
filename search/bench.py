"""`python -m search.bench`, the name users know, runs `python -m search.tools.bench`."""

from search.tools.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
