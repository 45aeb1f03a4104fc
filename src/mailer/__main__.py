"""python -m mailer"""

from mailer.cli import main

if __name__ == "__main__":  # not again in a sending process started by spawn
    main()
