"""`python -m etcdpy` runs the same command as the `etcdpy` script."""

from etcdpy.cli import main

if __name__ == "__main__":
    main()
