"""`python -m railyard`: the `railyard` command (`railyard-graph[cli]`)."""

from railyard.cli import main

if __name__ == "__main__":
    main()
