#!/usr/bin/env python
"""Django's command-line entry point for the gateway.

A bad environment value (a number that is not one, a missing secret) ends the command with one
line naming the variable, not a traceback.
"""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
    from django.core.management import execute_from_command_line

    from gateway_project.envparse import exit_on_bad_environment

    with exit_on_bad_environment():
        execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
