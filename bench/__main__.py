"""``python -m bench NAME [options]``; ``python -m bench --help`` lists the benchmarks (bench/cli.py)."""

from bench.cli import main

if __name__ == "__main__":
    main()
