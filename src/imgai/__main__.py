"""``python -m imgai`` runs the same command-line interface as the ``imgai`` script."""

from imgai.cli import main

if __name__ == "__main__":
    main()
